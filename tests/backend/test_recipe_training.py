"""Recipe details wired to config fields: LARS options, weight-decay policy and ramp, per-parameter
clipping, SimSiam's fixed predictor lr, the true epoch under max_steps, kNN bank size."""

import pytest
import torch

from backend.config import ExperimentConfig
from backend.events import read_events
from backend.methods import load_methods
from backend.optim import LARS, build_optimizer, wd_at
from backend.train import run_training
from backend.training import step as step_module
from backend.training.optimizer import configure_optimizer, set_scheduled_lr

from .trainer_helpers import make_run


def method_class(name):
    return load_methods()[name]


def _cfg(**sections):
    return ExperimentConfig.from_dict({"model": {"backbone": "tiny_cnn"}, **sections})


def test_lars_options_and_wd_policy_reach_the_optimiser_from_config():
    cfg = _cfg(optim={"optimizer": "lars", "lars_trust": "solo", "lars_clip_lr": True,
                      "lars_exclude_bias_n_norm": True, "weight_decay_policy": "all"})
    method = method_class("simclr")(cfg)
    opt = build_optimizer(method, cfg)
    assert isinstance(opt, LARS) and len(opt.param_groups) == 1
    group = opt.param_groups[0]
    assert (group["trust"], group["clip_lr"], group["exclude_bias_n_norm"]) == ("solo", True, True)
    assert group["weight_decay"] == cfg.optim.weight_decay
    default = build_optimizer(method, _cfg(optim={"optimizer": "lars"}))
    assert [g["weight_decay"] > 0 for g in default.param_groups] == [True, False]
    assert default.param_groups[0]["trust"] == "simclr" and not default.param_groups[0]["clip_lr"]


def test_bad_choices_are_rejected_by_path():
    with pytest.raises(Exception, match="optim.lars_trust must be one of simclr, solo"):
        _cfg(optim={"lars_trust": "lamb"})
    with pytest.raises(Exception, match="optim.grad_clip_mode must be one of global, per_parameter"):
        _cfg(optim={"grad_clip_mode": "norm"})


def test_weight_decay_ramp_values():
    cfg = _cfg(optim={"weight_decay": 0.04, "weight_decay_end": 0.4})
    assert wd_at(0, 100, cfg) == pytest.approx(0.04)
    assert wd_at(50, 100, cfg) == pytest.approx(0.22)
    assert wd_at(100, 100, cfg) == pytest.approx(0.4)
    assert wd_at(25, 100, cfg) == pytest.approx(0.4 + (0.04 - 0.4) * 0.5 * (1 + 0.7071067811865476))
    assert wd_at(37, 100, _cfg(optim={"weight_decay": 0.04})) == 0.04  # 0 = constant


def test_real_run_ramps_wd_and_clips_per_parameter(tmp_path, monkeypatch):
    seen_wd, clips = [], []
    real_set, real_clip = step_module.set_weight_decay, step_module.clip_grad_per_param_

    def spy_set(optimizer, wd):
        seen_wd.append(wd)
        real_set(optimizer, wd)
        assert [g["weight_decay"] for g in optimizer.param_groups] == [wd, 0.0]

    def spy_clip(params, clip):
        norms = real_clip(list(params), clip)
        clips.append(norms)
        return norms

    monkeypatch.setattr(step_module, "set_weight_decay", spy_set)
    monkeypatch.setattr(step_module, "clip_grad_per_param_", spy_clip)
    run = make_run(tmp_path, optim={"weight_decay": 0.04, "weight_decay_end": 0.4, "grad_clip": 1e-3,
                                    "grad_clip_mode": "per_parameter"},
                   schedule={"epochs": 2, "max_steps": 6})
    assert run_training(run, echo=False) == 0
    assert seen_wd == pytest.approx([wd_at(s, 6, ExperimentConfig.from_dict(
        {"optim": {"weight_decay": 0.04, "weight_decay_end": 0.4}})) for s in range(6)])
    assert len(clips) == 6 and all(len(n) > 2 for n in clips)
    assert any((n > 1e-3).any() for n in clips)  # clipping had something to clip


def test_clipped_gradients_have_at_most_the_clip_norm_each():
    cfg = _cfg(optim={"grad_clip": 0.01, "grad_clip_mode": "per_parameter"})
    method = method_class("simclr")(cfg)
    opt = configure_optimizer(method, cfg, fused=False)
    views = [torch.randn(8, 3, 32, 32) for _ in range(2)]
    method(views).loss.backward()

    class T:  # the fields apply_update reads
        pass
    t = T()
    t.cfg, t.method, t.optimizer = cfg, method, opt
    grads_before = [p.grad.clone() for p in method.parameters() if p.grad is not None]
    captured = []
    orig_step = opt.step
    opt.step = lambda: captured.extend(p.grad.clone() for p in method.parameters() if p.grad is not None) or orig_step()
    step_module.apply_update(t, 0.0)
    for before, after in zip(grads_before, captured):
        assert after.norm() <= 0.01 * 1.0001
        if before.norm() <= 0.01:
            assert torch.equal(before, after)


def test_simsiam_fix_pred_lr_keeps_the_predictor_at_the_base_lr():
    cfg = _cfg(method={"name": "simsiam", "fix_pred_lr": True})
    method = method_class("simsiam")(cfg)
    opt = configure_optimizer(method, cfg, fused=False)
    pred = {id(p) for p in method.predictor.parameters()}
    set_scheduled_lr(opt, 0.001, peak=0.5)
    for group in opt.param_groups:
        ids = {id(p) for p in group["params"]}
        assert ids <= pred or not ids & pred
        assert group["lr"] == (0.5 if ids <= pred else 0.001)
    plain = configure_optimizer(method_class("simsiam")(_cfg(method={"name": "simsiam"})),
                                _cfg(method={"name": "simsiam"}), fused=False)
    set_scheduled_lr(plain, 0.001, peak=0.5)
    assert all(g["lr"] == 0.001 for g in plain.param_groups)


def test_dino_and_swav_follow_the_real_epoch_under_max_steps(tmp_path):
    # 256 images / batch 64 = 4 steps per epoch; 100 planned epochs cut to 8 steps (2 epochs).
    run = make_run(tmp_path, method={"name": "dino", "out_dim": 64, "warmup_teacher_temp": 0.04,
                                     "teacher_temp": 0.07, "teacher_temp_warmup_epochs": 4,
                                     "freeze_last_layer_epochs": 1.0},
                   schedule={"epochs": 100, "max_steps": 8}, eval={"knn_every_epochs": 0})
    assert run_training(run, echo=False) == 0
    temps = {e["step"]: e["value"] for e in read_events(run / "events.jsonl")
             if e["kind"] == "metric" and e["name"] == "dino/teacher_temp"}
    assert temps, "no teacher_temp metric"
    for step, temp in temps.items():
        epoch = (step - 1) / 4  # the metric of step s is that of the step started at s - 1
        assert temp == pytest.approx(0.04 + 0.03 * epoch / 4, abs=1e-6), step


def test_methods_use_the_engine_epoch_when_set():
    cfg = _cfg(method={"name": "dino", "out_dim": 64, "teacher_temp_warmup_epochs": 10,
                       "warmup_teacher_temp": 0.04, "teacher_temp": 0.07, "freeze_last_layer_epochs": 1.0},
               schedule={"epochs": 100})
    dino = method_class("dino")(cfg)
    dino.epoch = 0.5  # progress 0.9 would say epoch 90
    assert dino.teacher_temperature(0.9) == pytest.approx(0.04 + 0.03 * 0.05)
    for p in dino.projector.last_layer.parameters():
        p.grad = torch.ones_like(p)
    dino.before_optimizer_step(0.9)
    assert all(p.grad is None for p in dino.projector.last_layer.parameters())  # frozen in epoch 0.5
    swav = method_class("swav")(_cfg(method={"name": "swav", "queue_start_epoch": 3, "queue_size": 64,
                                             "out_dim": 16}, schedule={"epochs": 100}))
    swav.epoch = 2.9
    assert not swav.queue_active(0.9)
    swav.epoch = 3.0
    assert swav.queue_active(0.0)


def test_online_knn_records_its_bank_size(tmp_path):
    run = make_run(tmp_path, schedule={"epochs": 1})
    assert run_training(run, echo=False) == 0
    knn = [e for e in read_events(run / "events.jsonl") if e.get("name") == "knn_top1"]
    assert knn and all(e["bank_size"] == 256 for e in knn)  # whole training split by default
    import json
    records = [json.loads(line) for line in (run / "evaluations.jsonl").read_text().splitlines()]
    assert records[-1]["bank_size"] == 256 and records[-1]["bank_limit"] == 0
    limited = make_run(tmp_path / "b", schedule={"epochs": 1}, eval={"knn_train_limit": 100})
    assert run_training(limited, echo=False) == 0
    knn = [e for e in read_events(limited / "events.jsonl") if e.get("name") == "knn_top1"]
    assert knn[-1]["bank_size"] == 100
