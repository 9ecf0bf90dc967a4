"""Tiny trained runs shared by the inspect/export/linear-probe tests (trained once per process)."""

import atexit
import shutil
import tempfile
import threading
from pathlib import Path

from backend.train import run_training

from .trainer_helpers import make_run

_RUNS: dict = {}
_LOCK = threading.Lock()

# A tiny CNN SimCLR run (trained: a few seconds) and a ViT-Tiny run whose checkpoint holds the
# untrained, seeded weights (ViT training on 2 CPU cores takes too long for a unit test; the
# attention and export properties tested hold for any weights); likewise a ResNet-18 run (export).
CONFIGS = {
    "cnn": {"data": {"synthetic_train_size": 256, "synthetic_test_size": 128},
            "schedule": {"epochs": 2, "warmup_epochs": 0}},
    "vit": {"model": {"backbone": "vit_tiny", "projector_hidden_dim": 64, "projector_out_dim": 32},
            "data": {"synthetic_train_size": 64, "synthetic_test_size": 32},
            "optim": {"batch_size": 32, "optimizer": "adamw", "lr": 1e-3, "weight_decay": 0.05},
            "schedule": {"epochs": 1, "warmup_epochs": 0},
            "eval": {"probe_batch_size": 32, "knn_every_epochs": 0, "knn_k": 5}},
    "resnet": {"model": {"backbone": "resnet18", "projector_hidden_dim": 64, "projector_out_dim": 32},
               "data": {"synthetic_train_size": 32, "synthetic_test_size": 16},
               "optim": {"batch_size": 16}, "schedule": {"epochs": 1, "warmup_epochs": 0},
               "eval": {"probe_batch_size": 16, "knn_every_epochs": 0, "knn_k": 5}},
}
CONFIGS["vit_mean"] = {**CONFIGS["vit"], "model": {**CONFIGS["vit"]["model"], "vit_pool": "mean"}}
UNTRAINED = {"vit", "vit_mean", "resnet"}


def _write_untrained_checkpoint(run: Path) -> None:
    """checkpoints/last.pt with a freshly initialised model (seeded like the trainer)."""
    import torch

    from backend.checkpoint import save_checkpoint
    from backend.methods import METHODS
    from backend.runs import checkpoint_path, read_run_config

    cfg = read_run_config(run)
    torch.manual_seed(cfg.runtime.seed)
    method = METHODS[cfg.method.name](cfg)
    save_checkpoint({"model": method.state_dict(), "epoch": 0, "step": 0, "config": cfg.to_dict()},
                    checkpoint_path(run))


def trained_run(kind: str) -> Path:
    """The run directory of a finished tiny run (``cnn`` or ``vit``); do not modify it."""
    with _LOCK:
        if kind not in _RUNS:
            root = Path(tempfile.mkdtemp(prefix=f"sslwb-inspect-{kind}-"))
            atexit.register(shutil.rmtree, root, ignore_errors=True)
            run = make_run(root, **CONFIGS[kind])
            if kind in UNTRAINED:
                _write_untrained_checkpoint(run)
            else:
                assert run_training(run, echo=False) == 0, (run / "events.jsonl").read_text()[-2000:]
            _RUNS[kind] = run
        return _RUNS[kind]


def copy_run(kind: str, dest: Path) -> Path:
    """A private copy of a trained run that a test may change."""
    target = Path(dest) / trained_run(kind).name
    shutil.copytree(trained_run(kind), target)
    return target
