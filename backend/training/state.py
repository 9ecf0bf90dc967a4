"""What the loop advances and what a checkpoint holds: counters, resume checks, the payload."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..checkpoint import load_checkpoint, save_checkpoint
from ..config import ExperimentConfig
from ..errors import ConfigError, WorkbenchError
from ..metrics_h5 import write_metrics_h5
from ..runs import CHECKPOINT_DIR, checkpoint_path

CHECKPOINT_FORMAT = 1
# Settings that must match for a checkpoint to be resumed (the weights would not fit otherwise).
RESUME_KEYS = ("method.name", "model.backbone", "data.image_size", "data.source",
               "model.projector_hidden_dim", "model.projector_out_dim", "model.projector_layers")


@dataclass
class LoopState:
    """Counters the loop advances; saved in checkpoints."""

    step: int = 0
    epoch: int = 0
    bad_steps: int = 0
    skipped_steps: int = 0
    last_knn: float | None = None
    last_loss: torch.Tensor | None = None         # the last finite loss (device tensor, not synced)
    pending: list = field(default_factory=list)   # (step, epoch, {name: tensor}) awaiting a flush
    images_since_flush: int = 0
    flush_time: float = field(default_factory=time.perf_counter)


def _config_value(cfg_dict: dict, path: str):
    node = cfg_dict
    for part in path.split("."):
        node = node.get(part, {}) if isinstance(node, dict) else None
    return node


def resume_mismatches(saved: dict, current: ExperimentConfig) -> list[str]:
    """Settings that differ between a checkpoint's config and the run's config."""
    cur = current.to_dict()
    out = []
    for key in RESUME_KEYS:
        a, b = _config_value(saved, key), _config_value(cur, key)
        if a != b:
            out.append(f"{key} (checkpoint {a!r}, config {b!r})")
    return out


def resume_checkpoint(run_dir: Path, cfg: ExperimentConfig) -> dict:
    """The run's last checkpoint, checked against its config before anything is loaded or written."""
    ckpt = load_checkpoint(checkpoint_path(run_dir))
    mismatches = resume_mismatches(ckpt.get("config", {}), cfg)
    if mismatches:
        raise ConfigError("cannot resume: the checkpoint was trained with different settings: "
                          + "; ".join(mismatches) + "; start a new run to train with the new settings")
    return ckpt


def checkpoint_payload(method, optimizer, aug_gen, state: LoopState, cfg: ExperimentConfig) -> dict:
    """Everything exact resume needs: weights, optimiser, RNG streams, method extras, counters."""
    extras = method.state_extras() if hasattr(method, "state_extras") else {}
    rng = {"torch": torch.get_rng_state(), "augment": aug_gen.get_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    return {"format": CHECKPOINT_FORMAT, "model": method.state_dict(), "optimizer": optimizer.state_dict(),
            "scaler": None, "rng": rng, "method_extras": extras, "step": state.step, "epoch": state.epoch,
            "skipped_steps": state.skipped_steps, "last_knn": state.last_knn, "config": cfg.to_dict()}


def commit_checkpoint(run_dir: Path, payload: dict, events, reason: str, keep_epoch: bool,
                      metrics_writer=None) -> None:
    """Commit a checkpoint atomically; refuse to write non-finite weights; sync events and metrics.
    ``metrics_writer`` (a ``backend.runs.MetricsH5Writer``) appends to metrics.h5; without one the
    file is rebuilt from events.jsonl."""
    for name, tensor in payload["model"].items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise WorkbenchError(f"refusing to checkpoint at step {payload['step']}: weight {name} is not finite")
    try:
        save_checkpoint(payload, checkpoint_path(run_dir))
        if keep_epoch:
            save_checkpoint(payload, checkpoint_path(run_dir, f"epoch-{payload['epoch']:04d}.pt"))
        events.sync()
        if metrics_writer is not None:
            metrics_writer.update()
        else:
            write_metrics_h5(run_dir)
    except OSError as exc:
        raise WorkbenchError(f"could not save a checkpoint in {run_dir / CHECKPOINT_DIR}: "
                             f"{exc.strerror or exc}; the previous checkpoint is kept") from None
    events.status("checkpoint", f"checkpoint saved ({reason})", step=payload["step"], epoch=payload["epoch"])
