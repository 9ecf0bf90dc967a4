"""Shared plumbing of the inspection tools: the run's config, a small cache of restored methods,
and checkpoint fingerprints (progress and cancellation: :mod:`backend.reporter`)."""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from pathlib import Path

from ..checkpoint import load_checkpoint
from ..config import ExperimentConfig
from ..errors import ConfigError
from ..runs import CHECKPOINT_DIR, CONFIG_FILE, read_run_config


def checkpoint_fingerprint(path) -> str:
    """Identity of a checkpoint file's content: size, mtime and its recorded hash (when present).

    A rewritten checkpoint changes at least the mtime, so caches keyed on this go stale; a run
    folder copied or moved with its mtimes (cp -p, copytree) keeps its caches."""
    path = Path(path)
    st = path.stat()
    sidecar = path.with_name(path.name + ".sha256")
    recorded = ""
    try:
        recorded = sidecar.read_text().split()[0]
    except (OSError, IndexError):
        pass
    text = f"{st.st_size}|{st.st_mtime_ns}|{recorded}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def run_config(run_dir=None, checkpoint=None) -> ExperimentConfig:
    """The run's config (config.json), or the one stored in ``checkpoint`` when there is none."""
    if run_dir is not None and (Path(run_dir) / CONFIG_FILE).exists():
        return read_run_config(run_dir)
    if checkpoint is not None:
        state = load_checkpoint(checkpoint)
        if isinstance(state.get("config"), dict):
            return ExperimentConfig.from_dict(state["config"])
    raise ConfigError(f"cannot find a config: {run_dir} has no {CONFIG_FILE} and no checkpoint with one was given")


def is_inside_run(run_dir, checkpoint: Path) -> bool:
    """Whether ``checkpoint`` is in ``<run_dir>/checkpoints``."""
    try:
        return checkpoint.resolve().parent == (Path(run_dir) / CHECKPOINT_DIR).resolve()
    except OSError:
        return False


_METHODS: "OrderedDict[tuple, tuple]" = OrderedDict()
_METHODS_LOCK = threading.Lock()
_METHODS_KEEP = 2


def release_models() -> None:
    """Drop the methods :func:`restored` keeps (frees their memory)."""
    with _METHODS_LOCK:
        _METHODS.clear()


def restored(run_dir, checkpoint=None, device="cpu"):
    """(method in eval mode, config, checkpoint path), memoised on the checkpoint's fingerprint.

    Clicking through images in the GUI calls attention maps many times; the checkpoint is read
    once. The two most recent methods are kept. Callers must not modify the returned method."""
    from ..devices import resolve_device
    from ..restore import resolve_checkpoint, restore_method

    path = resolve_checkpoint(run_dir, checkpoint)
    dev = resolve_device(str(device))
    key = (str(Path(run_dir).resolve()) if run_dir is not None else "", str(path.resolve()) if path.exists() else str(path),
           checkpoint_fingerprint(path) if path.exists() else "", str(dev))
    with _METHODS_LOCK:
        if key in _METHODS:
            _METHODS.move_to_end(key)
            return _METHODS[key]
    value = restore_method(run_dir, path, device=dev)
    with _METHODS_LOCK:
        _METHODS[key] = value
        while len(_METHODS) > _METHODS_KEEP:
            _METHODS.popitem(last=False)
    return value
