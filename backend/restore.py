"""Rebuild a trained method from a run directory or a checkpoint file (for eval/inspect/export)."""

from __future__ import annotations

from pathlib import Path

import torch

from .checkpoint import load_checkpoint
from .config import ExperimentConfig
from .errors import CheckpointError, ConfigError
from .methods import METHODS
from .runs import CONFIG_FILE, checkpoint_path, read_run_config


def resolve_checkpoint(run_dir=None, checkpoint=None) -> Path:
    """The checkpoint file to use: an explicit path, else ``<run_dir>/checkpoints/last.pt``."""
    if checkpoint is not None:
        return Path(checkpoint)
    if run_dir is None:
        raise CheckpointError("give a run directory or a checkpoint file")
    path = checkpoint_path(run_dir)
    if not path.exists():
        raise CheckpointError(f"{run_dir} has no checkpoint yet ({path} does not exist)")
    return path


def restore_method(run_dir=None, checkpoint=None, *, device="cpu", random_init: bool = False):
    """(method in eval mode on ``device``, its config, checkpoint path) from a run or checkpoint.

    ``random_init`` builds the same architecture with the run's seed but loads no weights (the
    baseline a trained encoder must beat)."""
    if random_init and run_dir is not None and checkpoint is None:
        path, state = Path(run_dir) / "random-init", None
    else:
        path = resolve_checkpoint(run_dir, checkpoint)
        state = load_checkpoint(path)
    if run_dir is not None and (Path(run_dir) / CONFIG_FILE).exists():
        cfg = read_run_config(run_dir)
    elif state is not None and isinstance(state.get("config"), dict):
        cfg = ExperimentConfig.from_dict(state["config"])
    else:
        raise ConfigError(f"cannot find the config for {path}: no config.json beside it and none inside it")
    if cfg.method.name not in METHODS:
        raise ConfigError(f"method.name must be one of {', '.join(sorted(METHODS))}, got {cfg.method.name!r}")
    torch.manual_seed(cfg.runtime.seed)
    method = METHODS[cfg.method.name](cfg)
    if state is not None and not random_init:
        try:
            method.load_state_dict(state["model"])
        except RuntimeError as exc:
            raise CheckpointError(f"{path} does not fit a {cfg.method.name}/{cfg.model.backbone} model: "
                                  f"{str(exc).splitlines()[0]}") from None
    return method.to(device).eval(), cfg, path
