"""Ops (CPU: aten operators) or kernels (CUDA) one training step launches, augmentation broken out.

    python benchmarks/kernel_count.py [--backbones tiny_cnn resnet18] [--batch 256] [--method simclr]

Counts come from torch.profiler over one step of the trainer's own ``optimisation_step`` on a
prepared Training (synthetic data unless overridden), after a warm-up step; the augmentation is
the views call. ``benchmarks/gpu_suite.py`` reports these counts per step on CUDA.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile, record_function

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backend import distributed as D  # noqa: E402
from backend.config import ExperimentConfig, deep_merge, preset_dict  # noqa: E402
from backend.control import TrainerControl  # noqa: E402
from backend.events import NullEventWriter  # noqa: E402
from backend.runs import create_run  # noqa: E402
from backend.training.setup import prepare  # noqa: E402
from backend.training.step import optimisation_step  # noqa: E402


def prepared(backbone: str, batch: int, method: str, device: str, overrides: dict | None = None,
             workspace=None):
    """A Training (the trainer's own setup) on synthetic data with ``backbone`` and ``batch``;
    ``overrides`` are merged last (e.g. another data source, runtime.compile)."""
    return prepared_cfg(ExperimentConfig.from_dict(deep_merge(deep_merge(preset_dict("quick"), {
        "method": {"name": method}, "model": {"backbone": backbone},
        "data": {"synthetic_train_size": 2 * batch, "synthetic_test_size": 64},
        "optim": {"batch_size": batch}, "schedule": {"epochs": 1, "warmup_epochs": 0},
        "eval": {"metrics_every_steps": 10 ** 6, "probe_batch_size": 16, "spectrum_every_steps": 0},
        "runtime": {"device": device}}), overrides or {})), workspace)


def prepared_cfg(cfg: ExperimentConfig, workspace=None):
    """The trainer's own Training for ``cfg``: a new run under ``workspace``, set up by ``prepare``."""
    run = create_run(Path(workspace or tempfile.mkdtemp()) / "ws", cfg)
    return prepare(run, False, TrainerControl(read_stdin=False), NullEventWriter(), D.DistInfo())


def count_step(t) -> tuple[int, int]:
    """(ops/kernels of the whole step, of its augmentation) for the step after one warm-up step."""
    order = torch.arange(len(t.train_set))
    optimisation_step(t, t.state, order, 0)
    original = t.views

    def views(images, generator=None):
        with record_function("augmentation"):
            return original(images, generator=generator)

    t.views = views
    cuda = t.device.type == "cuda"
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    try:
        with profile(activities=acts) as prof:
            optimisation_step(t, t.state, order, 1 % max(1, t.steps_per_epoch))
            if cuda:
                torch.cuda.synchronize()
    finally:
        t.views = original
    events = prof.events()
    if cuda:
        kernels = [e for e in events if e.device_type == torch.autograd.DeviceType.CUDA]
        aug_ranges = [e for e in events if e.name == "augmentation" and e.device_type != torch.autograd.DeviceType.CUDA]
        aug = sum(1 for k in kernels if any(r.time_range.start <= (k.cpu_parent or k).time_range.start
                                           <= r.time_range.end for r in aug_ranges)) if aug_ranges else 0
        return len(kernels), aug
    ops = [e for e in events if e.name.startswith("aten::")
           and (e.cpu_parent is None or not e.cpu_parent.name.startswith("aten::"))]
    aug = [e for e in ops if _inside(e, "augmentation")]
    return len(ops), len(aug)


def _inside(event, name: str) -> bool:
    parent = event.cpu_parent
    while parent is not None:
        if parent.name == name:
            return True
        parent = parent.cpu_parent
    return False


def main(argv=None) -> None:
    """Print the table of op/kernel counts per backbone."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbones", nargs="+", default=["tiny_cnn", "resnet18"])
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--method", default="simclr")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args(argv)
    unit = "CUDA kernels" if args.device.startswith("cuda") else "top-level aten ops"
    print(f"torch {torch.__version__}, device {args.device}, {args.method}, batch {args.batch}; counting {unit}")
    print(f"{'backbone':<12}{'step':>10}{'augment':>10}{'rest':>10}")
    for backbone in args.backbones:
        with tempfile.TemporaryDirectory() as ws:
            total, aug = count_step(prepared(backbone, args.batch, args.method, args.device, workspace=ws))
        print(f"{backbone:<12}{total:>10}{aug:>10}{total - aug:>10}")


if __name__ == "__main__":
    main()
