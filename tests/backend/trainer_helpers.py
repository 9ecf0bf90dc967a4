"""Shared helpers for trainer tests: tiny configs, run dirs, subprocess trainers, event waits."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from backend.config import ExperimentConfig, deep_merge, preset_dict
from backend.events import read_events
from backend.runs import create_run

ROOT = Path(__file__).resolve().parents[2]
# CIFAR-10 as an ImageFolder ({train,test}/<class>/*.jpg) in the ``shared`` folder beside the
# checkout; tests that need real photos skip with a reason when it is absent.
CIFAR10 = next((p / "shared" / "data" / "cifar10" for p in ROOT.parents
                if (p / "shared" / "data" / "cifar10").is_dir()), ROOT.parent / "shared" / "data" / "cifar10")

TINY = {"data": {"synthetic_train_size": 256, "synthetic_test_size": 128},
        "optim": {"batch_size": 64}, "schedule": {"epochs": 2, "warmup_epochs": 0},
        "eval": {"probe_batch_size": 64, "metrics_every_steps": 2, "knn_k": 10}}


def tiny_config(**overrides) -> ExperimentConfig:
    """The quick preset shrunk to a few seconds of CPU work, with nested overrides."""
    data = deep_merge(preset_dict("quick"), TINY)
    return ExperimentConfig.from_dict(deep_merge(data, overrides))


def make_run(tmp_path, **overrides) -> Path:
    return create_run(tmp_path / "ws", tiny_config(**overrides))


def losses_by_step(run_dir) -> dict[int, float]:
    return {e["step"]: e["value"] for e in read_events(Path(run_dir) / "events.jsonl")
            if e["kind"] == "metric" and e["name"] == "loss"}


def start_trainer(*args, stdin=subprocess.DEVNULL) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "backend", "train", *map(str, args)], cwd=ROOT, env=env,
                            stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def run_cli(*args, timeout=240) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, "-m", "backend", *map(str, args)], cwd=ROOT, env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)


def run_cli_in_process(capsys, *args) -> subprocess.CompletedProcess:
    """``sslwb ARGS`` in this process (``backend.cli.main``, no interpreter start-up), its output
    read through pytest's ``capsys``: exit code, stdout and stderr as ``run_cli`` returns them."""
    from backend.cli import main

    capsys.readouterr()
    try:
        code = main([str(a) for a in args])
    except SystemExit as exit_:   # argparse's usage errors
        code = exit_.code
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, out, err)


def wait_for_event(run_dir, predicate, timeout=120.0) -> dict:
    deadline = time.time() + timeout
    path = Path(run_dir) / "events.jsonl"
    while time.time() < deadline:
        if path.exists():
            for event in read_events(path):
                if predicate(event):
                    return event
        time.sleep(0.1)
    raise AssertionError(f"no matching event within {timeout}s in {path}")


def stdout_events(text: str) -> list[dict]:
    out = []
    for line in text.splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    return out


def step_and_snapshot_ema_pairs(method, views, labels=None):
    """One SGD step of ``method`` (lr 0.5), then its (online, target) parameter pairs and a copy of
    them taken before ``after_optimizer_step``; asserts the step made online and target differ."""
    import torch

    optimizer = torch.optim.SGD([p for p in method.parameters() if p.requires_grad], lr=0.5)
    method.training_step(views, labels, 0.0).loss.backward()
    optimizer.step()
    pairs = [(o, t) for online, target in method.momentum_pairs()
             for o, t in zip(online.parameters(), target.parameters())]
    before = [(o.detach().clone(), t.detach().clone()) for o, t in pairs]
    assert any(not torch.equal(o, t) for o, t in before)
    return pairs, before


def check_one_step(method, views, labels, n: int):
    """One training step of ``method`` on ``n`` images: a finite scalar loss, finite extras,
    projections for every image, and finite, non-zero gradients in every backbone parameter."""
    import torch

    out = method.training_step(views, labels, 0.0)
    assert torch.isfinite(out.loss) and out.loss.ndim == 0
    assert out.z1.shape[0] == n and (out.z2 is None or out.z2.shape[0] == n)
    for value in out.extras.values():
        assert torch.isfinite(torch.as_tensor(value)).all()
    out.loss.backward()
    grads = [p.grad for p in method.backbone.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(g.abs().sum() for g in grads) > 0
    return out
