"""Instance discrimination, PIRL, CMC, SupCon, HCL and MoCHi: a step per backbone family, the
memory bank (only the batch's rows move, unit rows, sized by the engine, restored on resume),
each loss against an independent computation, where gradients flow, exact resume, learning."""

import math

import pytest
import torch
import torch.nn.functional as F

from backend import losses
from backend.checkpoint import load_checkpoint
from backend.config import deep_merge
from backend.data.augment import ViewGenerator
from backend.errors import ConfigError
from backend.evaluate import evaluate_knn_checkpoint
from backend.methods import METHODS
from backend.methods import mochi as mochi_module
from backend.pretext.lab import rgb_to_lab
from backend.restore import restore_method
from backend.train import run_training

from .test_methods_zoo_a import LEARN
from .test_trainer import check_resume_is_exact
from .trainer_helpers import check_one_step, make_run, tiny_config

METHOD_NAMES = ["instdisc", "pirl", "cmc", "supcon", "hcl", "mochi"]
SMALL = {"model": {"projector_hidden_dim": 64, "projector_out_dim": 32}}
PER_METHOD = {"instdisc": {"method": {"num_negatives": 16}}, "pirl": {"method": {"num_negatives": 16}},
              "mochi": {"method": {"queue_size": 64, "n_hard": 8, "n_mix": 6, "n_query_mix": 3,
                                   "mix_start_epoch": 0.0}}}
BANK_SIZE = 40


def build(name, backbone="tiny_cnn", n=8, **overrides):
    """A method with small heads (a bank of BANK_SIZE rows, indices 0..n-1 set) and
    (views, labels) of a batch of ``n`` random images."""
    base = deep_merge(deep_merge(SMALL, PER_METHOD.get(name, {})),
                      {"method": {"name": name}, "model": {"backbone": backbone}})
    cfg = tiny_config(**deep_merge(base, overrides))
    torch.manual_seed(0)
    method = METHODS[name](cfg)
    if getattr(method, "uses_indices", False):
        method.prepare(BANK_SIZE)
        method.set_batch_indices(torch.arange(n) * 3)
    gen = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=gen)
    views = ViewGenerator(cfg.augment, cfg.data.image_size)(images, generator=gen)
    labels = torch.randint(0, 3, (n,), generator=gen)
    return method, views, labels


# ---- (1) one step per backbone family -----------------------------------------------------------

@pytest.mark.parametrize("backbone", ["tiny_cnn", "vit_tiny"])
@pytest.mark.parametrize("name", METHOD_NAMES)
def test_one_step_is_finite_and_reaches_the_backbone(name, backbone):
    assert {"cnn", "vit"} <= set(METHODS[name].families)
    n = 8 if backbone == "tiny_cnn" else 4  # a ViT step is the slow part of this file
    method, views, labels = build(name, backbone, n)
    check_one_step(method, views, labels, n)
    features, projected = method.embed(views[0])
    assert features.shape == (n, method.feature_dim) and projected.shape[0] == n


# ---- (2) the memory bank: engine hooks, updates, checkpoints -------------------------------------

@pytest.mark.parametrize("name", ["instdisc", "pirl"])
def test_bank_updates_only_the_batch_rows_and_stays_unit_norm(name):
    method, views, labels = build(name)
    assert METHODS[name].uses_indices and method.bank.rows.shape == (BANK_SIZE, 32)
    before = method.bank.rows.clone()
    assert torch.allclose(before.norm(dim=1), torch.ones(BANK_SIZE), atol=1e-5)
    idx = torch.arange(8) * 3
    out = method.training_step(views, labels, 0.0)
    after = method.bank.rows
    moved = (after != before).any(dim=1)
    assert moved[idx].all() and not moved[~torch.isin(torch.arange(BANK_SIZE), idx)].any()
    expected = F.normalize(0.5 * before[idx] + 0.5 * F.normalize(out.z1.detach(), dim=1), dim=1)
    assert torch.allclose(after[idx], expected, atol=1e-5)
    assert torch.allclose(after.norm(dim=1), torch.ones(BANK_SIZE), atol=1e-5)
    assert not after.requires_grad and "bank.rows" in method.state_dict()


def test_bank_methods_refuse_a_step_without_the_engine_hooks():
    method, views, labels = build("instdisc")
    method.set_batch_indices(torch.arange(3))
    with pytest.raises(ConfigError, match="set_batch_indices"):
        method.training_step(views, labels, 0.0)
    unprepared = METHODS["instdisc"](method.cfg)
    unprepared.set_batch_indices(torch.arange(8))
    with pytest.raises(ConfigError, match="prepare"):
        unprepared.training_step(views, labels, 0.0)


def test_instdisc_softmax_loss_matches_an_independent_computation():
    method, views, labels = build("instdisc", method={"temperature": 0.2})
    idx = torch.arange(8) * 3
    bank = method.bank.rows.clone()
    gen_state = method._negative_gen.get_state()
    out = method.training_step(views, labels, 0.0)
    # The negatives the method drew: m = 16 uniform others per image from the same generator.
    gen = torch.Generator()
    gen.set_state(gen_state)
    negatives = (idx[:, None] + torch.randint(1, BANK_SIZE, (8, 16), generator=gen)) % BANK_SIZE
    assert not (negatives == idx[:, None]).any()
    v = F.normalize(out.z1, dim=1)
    logits = torch.cat([(v * bank[idx]).sum(1, keepdim=True), torch.einsum("nd,nmd->nm", v, bank[negatives])], 1)
    expected = -torch.log_softmax(logits / 0.2, dim=1)[:, 0].mean()
    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_instdisc_nce_fixes_the_partition_on_the_first_batch():
    method, views, labels = build("instdisc", method={"bank_loss": "nce"})
    assert float(method.bank.partition) == 0.0
    first = method.training_step(views, labels, 0.0)
    z = float(method.bank.partition)
    assert z > 0 and math.isfinite(first.loss.item())
    method.training_step(views, labels, 0.1)
    assert float(method.bank.partition) == z and "bank.partition" in method.state_dict()


def test_a_checkpoint_sizes_the_bank_without_prepare():
    method, views, labels = build("instdisc")
    method.training_step(views, labels, 0.0)
    fresh = METHODS["instdisc"](method.cfg)
    assert fresh.bank.size == 0
    fresh.load_state_dict(method.state_dict())
    assert torch.equal(fresh.bank.rows, method.bank.rows)


@pytest.mark.parametrize("name", ["instdisc", pytest.param("pirl", marks=pytest.mark.long)])
def test_bank_resume_is_exact(tmp_path, name):
    overrides = {"method": {"name": name, "num_negatives": 32}, "eval": {"knn_every_epochs": 0}}
    check_resume_is_exact(tmp_path, overrides)
    # The resumed run ends with the very bank of the uninterrupted one (256 training images).
    full, resumed = (load_checkpoint(next((tmp_path / d).rglob("last.pt")))["model"]["bank.rows"] for d in "ab")
    assert full.shape[0] == 256 and torch.equal(full, resumed)


# ---- (3) PIRL's jigsaw branch and mixed loss ----------------------------------------------------

def test_pirl_loss_mixes_the_jigsaw_and_image_terms_and_trains_every_head():
    method, views, labels = build("pirl", method={"pirl_lambda": 0.3, "temperature": 0.2})
    idx = torch.arange(8) * 3
    bank = method.bank.rows.clone()
    neg_state = method._negative_gen.get_state()
    out = method.training_step(views, labels, 0.0)
    gen = torch.Generator()
    gen.set_state(neg_state)
    negatives = bank[(idx[:, None] + torch.randint(1, BANK_SIZE, (8, 16), generator=gen)) % BANK_SIZE]

    def term(v):
        v = F.normalize(v, dim=1)
        logits = torch.cat([(v * bank[idx]).sum(1, keepdim=True), torch.einsum("nd,nmd->nm", v, negatives)], 1)
        return -torch.log_softmax(logits / 0.2, dim=1)[:, 0].mean()

    expected = 0.3 * term(out.z2) + 0.7 * term(out.z1)
    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-5)
    out.loss.backward()
    for head in (method.projector, method.tile_head, method.jigsaw_head, method.backbone):
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in head.parameters())


def test_pirl_tiles_go_through_the_shared_backbone():
    method, views, _ = build("pirl")
    seen = []
    method.backbone.register_forward_hook(lambda m, i, o: seen.append(tuple(i[0].shape)))
    method.transformed(views[1])
    assert seen == [(8 * 9, 3, 8, 8)]  # 9 tiles of 8 px per 32 px image, one batch


# ---- (4) CMC: L / ab views, two encoders, cross-view loss ------------------------------------

def test_cmc_backbone_takes_rgb_and_splits_l_and_ab():
    method, views, _ = build("cmc")
    mean = torch.tensor(method.cfg.augment.mean).view(1, 3, 1, 1)
    std = torch.tensor(method.cfg.augment.std).view(1, 3, 1, 1)
    lab = rgb_to_lab(views[0] * std + mean)
    l_in, ab_in = method.backbone.lab_views(views[0])
    assert torch.allclose(l_in, (lab[:, :1] / 50 - 1).expand(-1, 3, -1, -1), atol=1e-4)
    assert torch.allclose(ab_in[:, :2], lab[:, 1:] / 110, atol=1e-4) and not ab_in[:, 2].any()
    features = method.backbone(views[0])
    f_l, f_ab = method.backbone.l_encoder(l_in), method.backbone.ab_encoder(ab_in)
    assert torch.allclose(features, torch.cat([f_l, f_ab], 1), atol=1e-5)
    assert features.shape == (8, method.feature_dim) == (8, 2 * method.view_dim)


def test_cmc_loss_is_the_two_way_cross_view_info_nce_and_trains_both_encoders():
    method, views, _ = build("cmc", method={"temperature": 0.3})
    out = method.training_step(views, None, 0.0)
    a, b = F.normalize(out.z1, dim=1), F.normalize(out.z2, dim=1)
    s = a @ b.T / 0.3
    expected = (-torch.log_softmax(s, 1).diag().mean() - torch.log_softmax(s, 0).diag().mean()) / 2
    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-5)
    out.loss.backward()
    for encoder in (method.backbone.l_encoder, method.backbone.ab_encoder, method.ab_projector):
        assert sum(p.grad.abs().sum() for p in encoder.parameters()) > 0


# ---- (5) SupCon and HCL wiring -------------------------------------------------------------------

def test_supcon_stacks_both_views_with_their_labels(monkeypatch):
    method, views, labels = build("supcon", method={"temperature": 0.2})
    seen = []
    real = losses.supcon
    monkeypatch.setattr(losses, "supcon", lambda z, y, t: seen.append((z, y, t)) or real(z, y, t))
    out = method.training_step(views, labels, 0.0)
    (z, y, t), = seen
    assert t == 0.2 and torch.equal(y, torch.cat([labels, labels]))
    assert torch.equal(z, torch.cat([out.z1, out.z2]))
    positives = (y[:, None] == y[None, :]) & ~torch.eye(16, dtype=torch.bool)
    assert (positives.sum(1) >= 1).all() and positives[torch.arange(8), torch.arange(8) + 8].all()
    with pytest.raises(ValueError, match="labels"):
        method.training_step(views, None, 0.0)


def test_hcl_without_hardness_or_debiasing_is_simclr():
    hcl, views, _ = build("hcl", method={"beta": 0.0, "tau_plus": 0.0, "temperature": 0.5})
    simclr, _, _ = build("simclr", method={"temperature": 0.5})
    assert hcl.training_step(views, None, 0.0).loss.item() == pytest.approx(
        simclr.training_step(views, None, 0.0).loss.item(), rel=1e-5)
    hard, _, _ = build("hcl", method={"beta": 1.0, "tau_plus": 0.1})
    assert abs(hard.training_step(views, None, 0.0).loss.item()
               - simclr.training_step(views, None, 0.0).loss.item()) > 1e-3


# ---- (6) MoCHi's synthetic negatives ------------------------------------------------------------

def test_mochi_negatives_are_detached_unit_mixes_of_the_hardest_queue_entries(monkeypatch):
    method, views, labels = build("mochi")
    method.queue.push(F.normalize(torch.randn(64, 32, generator=torch.Generator().manual_seed(5)), dim=1))
    queue = method.queue.features.clone()
    seen = []
    real = mochi_module.mochi_negatives
    monkeypatch.setattr(mochi_module, "mochi_negatives",
                        lambda q, k, *a, **kw: seen.append((q, real(q, k, *a, **kw))) or seen[-1][1])
    out = method.training_step(views, labels, 0.0)
    assert len(seen) == 2 and out.extras["mixing"] == 1.0  # one per (query, key) direction
    for q, extra in seen:
        assert extra.shape == (8, 6 + 3, 32) and not extra.requires_grad
        assert torch.allclose(extra.norm(dim=-1), torch.ones(8, 9), atol=1e-5)
        qn = F.normalize(q.detach(), dim=1)
        hardest = queue[torch.topk(qn @ queue.T, 8, dim=1).indices]           # (8, n_hard, D)
        for i in range(8):  # each mix lies in the span of its query's hardest entries (+ the query)
            for basis, rows in ((hardest[i], extra[i, :6]), (torch.cat([hardest[i], qn[i:i + 1]]), extra[i, 6:])):
                coef = torch.linalg.lstsq(basis.T, rows.T).solution
                assert torch.allclose(basis.T @ coef, rows.T, atol=1e-4)
    assert torch.isfinite(out.loss)


@pytest.mark.parametrize("split_query_bn", [False, True])
def test_mochi_waits_for_its_start_epoch_and_is_moco_before(split_query_bn):
    bn = {"split_query_bn": split_query_bn}  # 16 images: two query BN groups when split
    mochi, views, labels = build("mochi", n=16, method={"mix_start_epoch": 1.0, **bn}, schedule={"epochs": 2})
    torch.manual_seed(0)
    moco = METHODS["moco"](tiny_config(**deep_merge(SMALL, {"method": {"name": "moco", "queue_size": 64, **bn}})))
    assert not mochi.mixing(0.49) and mochi.mixing(0.5)
    a, b = mochi.training_step(views, labels, 0.2), moco.training_step(views, labels, 0.2)
    assert a.extras["mixing"] == 0.0 and a.loss.item() == pytest.approx(b.loss.item(), rel=1e-5)


def test_mochi_counts_its_start_epoch_in_true_epochs_when_max_steps_cuts_the_run():
    # 10 epochs cut to 64 steps: at progress 0.25 (step 16 of 64) the run is in its first epoch
    # (32 steps each), so mixing must not have started; progress * epochs would say epoch 2.5.
    mochi, _, _ = build("mochi", method={"mix_start_epoch": 1.0}, schedule={"epochs": 10, "max_steps": 64})
    mochi.epoch = 0.5
    assert not mochi.mixing(0.25)
    mochi.epoch = 1.0
    assert mochi.mixing(0.5)


# ---- (7) exact resume and learning --------------------------------------------------------------

@pytest.mark.parametrize("name", ["hcl"] + [pytest.param(n, marks=pytest.mark.long) for n in ("cmc", "supcon", "mochi")])
def test_resume_is_exact(tmp_path, name):
    overrides = deep_merge(deep_merge(SMALL, PER_METHOD.get(name, {})),
                           {"method": {"name": name}, "eval": {"knn_every_epochs": 0}})
    if name == "mochi":  # mixing starts at step 4 of 8 (epoch 1), after the stop at step 3
        overrides["method"].update(queue_size=128, mix_start_epoch=1.0)
    check_resume_is_exact(tmp_path, overrides)


def test_a_restored_bank_method_serves_knn_features(tmp_path):
    run = make_run(tmp_path, method={"name": "instdisc", "num_negatives": 32},
                   schedule={"epochs": 1}, eval={"knn_every_epochs": 1})
    assert run_training(run, echo=False) == 0
    method, _, _ = restore_method(run)
    assert method.bank.size == 256
    assert evaluate_knn_checkpoint(run, k=10, record=False)["top1"] > 0


# Settings of the learning runs (LEARN: 1024 synthetic 16 px images, batch 32; 32 steps an epoch).
# The memory-bank methods see each image once an epoch, so their bank positives start as random
# unit vectors and lag an epoch behind (measured: below random init after 8 epochs, +0.03..+0.07
# after 32, +0.09 after 64); MoCHi is MoCo v2, itself a slow starter here (zoo-a's SLOW). So they
# train 64 epochs, within the papers' settings (bank momentum 0.5, m negatives of the 1023 other
# images, t = 0.1 as Wu et al.'s CIFAR runs; MoCHi's warm-up of one plain-MoCo epoch).
LEARN_EXTRA = {
    "instdisc": {"method": {"num_negatives": 256, "temperature": 0.1}, "schedule": {"epochs": 64}},
    "pirl": {"method": {"num_negatives": 256, "temperature": 0.1}, "schedule": {"epochs": 96}},
    # CMC: +0.025 after 8 epochs (session 8, seed 0), +0.096 / +0.043 after 16 (seeds 0, 1).
    "cmc": {"method": {"temperature": 0.1}, "augment": {"jitter_prob": 0.0, "grayscale_prob": 0.0},
            "schedule": {"epochs": 16}},
    "supcon": {}, "hcl": {"schedule": {"epochs": 16}},
    "mochi": {"method": {"queue_size": 256, "n_hard": 32, "n_mix": 32, "n_query_mix": 16,
                         "mix_start_epoch": 1.0, "temperature": 0.1}, "schedule": {"epochs": 64}},
}
# Fast learners (beat random init by > 0.03 on seeds 0 and 1 within 256 steps) run in the default
# suite; the rest are `long`: HCL and CMC need 16 epochs (20 s), the bank methods 64-96 (1-3
# minutes each on an idle 2-core CPU).
FAST_LEARNERS = ("supcon",)


# The long runs get 15 minutes (pytest's default timeout is 5): on a loaded 2-core CPU a 64-epoch
# run took 5 minutes (instdisc).
@pytest.mark.parametrize("name", [n if n in FAST_LEARNERS else
                                  pytest.param(n, marks=[pytest.mark.long, pytest.mark.timeout(900)])
                                  for n in METHOD_NAMES])
def test_short_run_beats_random_init(tmp_path, name):
    overrides = deep_merge(deep_merge(SMALL, LEARN), deep_merge(LEARN_EXTRA[name], {"method": {"name": name}}))
    run = make_run(tmp_path, **overrides)
    assert run_training(run, echo=False) == 0
    trained = evaluate_knn_checkpoint(run, k=10, record=False)["top1"]
    random = evaluate_knn_checkpoint(run, k=10, record=False, random_init=True)["top1"]
    assert trained > random + 0.03, (trained, random)
