"""LARS (SimCLR and solo-learn forms), weight-decay policies, DINO's per-parameter clipping and
schedules, each checked against a formula written out independently here."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from backend.config import ExperimentConfig
from backend.optim import LARS, build_optimizer, clip_grad_per_param_, parameter_groups, set_weight_decay
from backend.schedules import cosine_ramp, dino_teacher_temp, epoch_at, last_layer_frozen


def _toy(seed=0):
    """A weight matrix (large norm), a bias and a norm scale (1-D), fixed gradients for two steps."""
    g = torch.Generator().manual_seed(seed)
    w = nn.Parameter(torch.randn(5, 4, generator=g, dtype=torch.float64) * 3)
    b = nn.Parameter(torch.randn(5, generator=g, dtype=torch.float64) * 0.1)
    s = nn.Parameter(1 + 0.1 * torch.randn(5, generator=g, dtype=torch.float64))
    grads = [[torch.randn(p.shape, generator=g, dtype=torch.float64) * k for p, k in ((w, 1.0), (b, 0.5), (s, 2.0))]
             for _ in range(2)]
    return [w, b, s], grads


def _reference(params, grads, *, lr, momentum, wd, eta, trust, clip_lr, exclude):
    """LARS written out per parameter with plain Python floats for the norms (numpy arrays)."""
    x = [p.detach().numpy().copy() for p in params]
    bufs = [None] * len(x)
    for step_grads in grads:
        for i, g in enumerate(step_grads):
            g = g.numpy()
            excluded = exclude and x[i].ndim == 1
            w_norm, g_norm = float(np.sqrt((x[i] ** 2).sum())), float(np.sqrt((g ** 2).sum()))
            if trust == "solo":  # eta*||w|| / (||g|| + wd*||w|| + eps) on (g + wd*w); raw g when excluded
                if excluded or w_norm == 0 or g_norm == 0:
                    d = g
                else:
                    r = eta * w_norm / (g_norm + wd * w_norm + 1e-8)
                    r = min(r / lr, 1.0) if clip_lr else r
                    d = (g + wd * x[i]) * r
            else:  # SimCLR: eta*||w|| / ||g + wd*w||
                d = g + wd * x[i]
                if not excluded:
                    d_norm = float(np.sqrt((d ** 2).sum()))
                    r = eta * w_norm / d_norm
                    r = min(r / lr, 1.0) if clip_lr else r
                    d = d * r
            bufs[i] = d.copy() if bufs[i] is None else momentum * bufs[i] + d
            x[i] = x[i] - lr * bufs[i]
    return x


def _run_lars(params, grads, **kw):
    opt = LARS([{"params": params}], **kw)
    for step_grads in grads:
        for p, g in zip(params, step_grads):
            p.grad = g.clone()
        opt.step()
    return [p.detach().numpy() for p in params]


@pytest.mark.parametrize("trust", ["simclr", "solo"])
@pytest.mark.parametrize("clip_lr", [False, True])
@pytest.mark.parametrize("exclude", [False, True])
def test_lars_two_momentum_steps_match_formula(trust, clip_lr, exclude):
    params, grads = _toy()
    hp = dict(lr=0.3, momentum=0.9, weight_decay=1e-2, eta=0.02)
    ref = _reference(params, grads, lr=hp["lr"], momentum=hp["momentum"], wd=hp["weight_decay"], eta=hp["eta"],
                     trust=trust, clip_lr=clip_lr, exclude=exclude)
    ours = _run_lars(params, grads, **hp, trust=trust, clip_lr=clip_lr, exclude_bias_n_norm=exclude)
    for a, b in zip(ours, ref):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


def test_lars_clip_lr_binds_only_where_the_local_rate_exceeds_lr():
    """At lr=0.1 the big weight's ratio stays below lr (unclipped); at lr=1e-3 every ratio is
    capped, so the update is plain SGD at lr on (g + wd*w)."""
    params, grads = _toy()
    w, g = params[0].detach().numpy(), grads[0][0].numpy()
    ratio = 0.02 * np.linalg.norm(w) / (np.linalg.norm(g) + 1e-2 * np.linalg.norm(w) + 1e-8)
    assert 1e-3 < ratio < 0.1
    step = [grads[0]]
    lo = _run_lars([p.detach().clone().requires_grad_() for p in params], step, lr=1e-3, momentum=0.9,
                   weight_decay=1e-2, eta=0.02, trust="solo", clip_lr=True)
    np.testing.assert_allclose(lo[0], w - 1e-3 * (g + 1e-2 * w), rtol=1e-12)
    hi = _run_lars([p.detach().clone().requires_grad_() for p in params], step, lr=0.1, momentum=0.9,
                   weight_decay=1e-2, eta=0.02, trust="solo", clip_lr=True)
    np.testing.assert_allclose(hi[0], w - ratio * (g + 1e-2 * w), rtol=1e-12)  # lr * (ratio / lr)


def test_lars_excluded_bias_gets_raw_gradient_in_solo_form_and_decayed_one_in_simclr_form():
    params, grads = _toy()
    b0, gb = params[1].detach().numpy().copy(), grads[0][1].numpy()
    solo = _run_lars([p.detach().clone().requires_grad_() for p in params], [grads[0]], lr=0.5, weight_decay=0.1,
                     trust="solo", exclude_bias_n_norm=True)
    np.testing.assert_allclose(solo[1], b0 - 0.5 * gb, rtol=1e-12)
    simclr = _run_lars([p.detach().clone().requires_grad_() for p in params], [grads[0]], lr=0.5, weight_decay=0.1,
                       trust="simclr", exclude_bias_n_norm=True)
    np.testing.assert_allclose(simclr[1], b0 - 0.5 * (gb + 0.1 * b0), rtol=1e-12)


def test_lars_zero_weight_is_not_adapted():
    w = nn.Parameter(torch.zeros(3, 2, dtype=torch.float64))
    g = torch.full((3, 2), 0.5, dtype=torch.float64)
    for trust in ("simclr", "solo"):
        out = _run_lars([w.detach().clone().requires_grad_()], [[g]], lr=0.1, weight_decay=0.1, trust=trust)
        np.testing.assert_allclose(out[0], -0.1 * g.numpy())


def test_lars_rejects_bad_options():
    p = [nn.Parameter(torch.ones(2, 2))]
    with pytest.raises(ValueError, match="trust"):
        LARS(p, lr=0.1, trust="bolts")
    with pytest.raises(ValueError, match="eta"):
        LARS(p, lr=0.1, eta=0.0)


def test_lars_loads_state_saved_before_the_options_existed():
    params, grads = _toy()
    opt = LARS([{"params": params}], lr=0.1)
    for p, g in zip(params, grads[0]):
        p.grad = g.clone()
    opt.step()
    sd = opt.state_dict()
    for group in sd["param_groups"]:
        for key in ("clip_lr", "exclude_bias_n_norm", "trust", "eps"):
            del group[key]
    fresh = LARS([{"params": params}], lr=0.1)
    fresh.load_state_dict(sd)
    assert fresh.param_groups[0]["trust"] == "simclr" and fresh.param_groups[0]["clip_lr"] is False
    fresh.step()


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, 2)
        self.frozen = nn.Linear(2, 2)
        self.frozen.requires_grad_(False)


def test_parameter_groups_policies():
    net = _Net()
    default = parameter_groups(net, 5e-4)
    assert [len(g["params"]) for g in default] == [2, 4]  # conv/fc weights | conv/fc biases + bn
    assert all(p.ndim > 1 for p in default[0]["params"]) and all(p.ndim <= 1 for p in default[1]["params"])
    assert (default[0]["weight_decay"], default[1]["weight_decay"], default[1]["lars"]) == (5e-4, 0.0, False)
    everything = parameter_groups(net, 5e-4, "all")
    assert len(everything) == 1 and len(everything[0]["params"]) == 6 and everything[0]["weight_decay"] == 5e-4
    with pytest.raises(ValueError, match="weight-decay policy"):
        parameter_groups(net, 5e-4, "norm_only")


def test_build_optimizer_defaults_unchanged_and_options_pass_through():
    cfg = ExperimentConfig()
    cfg.optim.optimizer, cfg.optim.weight_decay = "lars", 1e-6
    opt = build_optimizer(_Net(), cfg)
    g0, g1 = opt.param_groups
    assert isinstance(opt, LARS) and (g0["trust"], g0["clip_lr"], g0["exclude_bias_n_norm"]) == ("simclr", False, False)
    assert g0["lars"] and not g1["lars"] and g1["weight_decay"] == 0.0 and g0["eta"] == cfg.optim.lars_eta
    opt = build_optimizer(_Net(), cfg, wd_policy="all", lars_trust="solo", lars_clip_lr=True,
                          lars_exclude_bias_n_norm=True)
    (g,) = opt.param_groups
    assert (g["trust"], g["clip_lr"], g["exclude_bias_n_norm"], g["weight_decay"]) == ("solo", True, True, 1e-6)
    cfg.optim.optimizer = "sgd"
    sgd = build_optimizer(_Net(), cfg, wd_policy="all")
    assert isinstance(sgd, torch.optim.SGD) and len(sgd.param_groups) == 1 and "lars" not in sgd.param_groups[0]


def test_set_weight_decay_touches_decayed_groups_only():
    cfg = ExperimentConfig()
    cfg.optim.optimizer = "adamw"
    opt = build_optimizer(_Net(), cfg)
    set_weight_decay(opt, 0.3)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.3, 0.0]


def test_adamw_uses_the_configured_betas_in_its_update():
    """Two AdamW steps against the update written out: m, v running means with beta1 / beta2,
    bias correction, decoupled weight decay (betas 0.5 / 0.95, the context encoder's and MAE's)."""
    cfg = ExperimentConfig()
    cfg.optim.optimizer, cfg.optim.lr, cfg.optim.batch_size = "adamw", 0.01, 256
    cfg.optim.weight_decay, cfg.optim.weight_decay_policy = 0.1, "all"
    cfg.optim.adam_beta1, cfg.optim.adam_beta2 = 0.5, 0.95
    w = nn.Parameter(torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64))
    opt = build_optimizer(nn.ParameterList([w]), cfg)
    assert opt.param_groups[0]["betas"] == (0.5, 0.95)
    expected, m, v = w.detach().clone(), torch.zeros(3, dtype=torch.float64), torch.zeros(3, dtype=torch.float64)
    for t, grad in enumerate(([0.3, -1.0, 2.0], [-0.2, 0.4, 1.0]), start=1):
        g = torch.tensor(grad, dtype=torch.float64)
        w.grad = g.clone()
        opt.step()
        expected = expected * (1 - 0.01 * 0.1)
        m, v = 0.5 * m + 0.5 * g, 0.95 * v + 0.05 * g * g
        m_hat, v_hat = m / (1 - 0.5 ** t), v / (1 - 0.95 ** t)
        expected = expected - 0.01 * m_hat / (v_hat.sqrt() + 1e-8)
        torch.testing.assert_close(w.detach(), expected, rtol=1e-10, atol=1e-12)


def test_clip_grad_per_param_matches_dino_rule():
    g = torch.Generator().manual_seed(1)
    params = [nn.Parameter(torch.zeros(s)) for s in ((4, 3), (7,), (2, 2, 2))]
    scales = (10.0, 0.01, 3.0)
    grads = [torch.randn(p.shape, generator=g) * k for p, k in zip(params, scales)]
    for p, gr in zip(params, grads):
        p.grad = gr.clone()
    params.append(nn.Parameter(torch.zeros(3)))  # no gradient: skipped
    norms = clip_grad_per_param_(params, 1.5)
    expected_norms = [math.sqrt(float((gr.double() ** 2).sum())) for gr in grads]
    np.testing.assert_allclose(norms.numpy(), expected_norms, rtol=1e-6)
    for p, gr, n in zip(params, grads, expected_norms):
        coef = 1.5 / (n + 1e-6)
        expected = gr * coef if coef < 1 else gr
        torch.testing.assert_close(p.grad, expected, rtol=1e-6, atol=0)
    assert torch.equal(params[1].grad, grads[1])  # the small one is untouched, not rescaled to 1.5
    with pytest.raises(ValueError, match="clip"):
        clip_grad_per_param_(params, 0.0)


def test_cosine_ramp_is_dinos_wd_schedule():
    epochs, niter = 3, 7
    total = epochs * niter
    its = np.arange(total)
    dino = 0.4 + 0.5 * (0.04 - 0.4) * (1 + np.cos(np.pi * its / total))  # utils.cosine_scheduler, no warm-up
    ours = [cosine_ramp(i, total, 0.04, 0.4) for i in its]
    np.testing.assert_allclose(ours, dino, rtol=1e-12)
    assert cosine_ramp(0, total, 0.04, 0.4) == pytest.approx(0.04)
    assert cosine_ramp(total / 2, total, 0.04, 0.4) == pytest.approx(0.22)
    assert cosine_ramp(total + 5, total, 0.04, 0.4) == pytest.approx(0.4)
    with pytest.raises(ValueError):
        cosine_ramp(1, 0, 0.04, 0.4)


def test_epoch_counting_helpers():
    assert epoch_at(15, 10) == 1.5
    assert [last_layer_frozen(s, 10, 1) for s in (0, 9, 10)] == [True, True, False]
    warm = np.linspace(0.04, 0.07, 30)
    assert [dino_teacher_temp(e, 0.04, 0.07, 30) for e in range(30)] == pytest.approx(list(warm))
    assert dino_teacher_temp(30, 0.04, 0.07, 30) == 0.07 and dino_teacher_temp(0, 0.04, 0.07, 0) == 0.07
    assert dino_teacher_temp(0, 0.04, 0.07, 1) == 0.04
    with pytest.raises(ValueError):
        epoch_at(1, 0)
