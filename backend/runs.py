"""The run directory (docs/ARCHITECTURE.md): create, list and read runs; used by trainer, CLI and GUI alike.

Layout of ``<workspace>/runs/<run-id>/``: ``config.json`` (resolved config, seed, versions, device),
``events.jsonl``, ``metrics.h5``, ``checkpoints/``, ``evaluations.jsonl``, ``inspect/``, ``export/``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from .config import ExperimentConfig
from .errors import ConfigError
from .events import EventTail, read_events
from .ledger import RunLedger
from .metrics_h5 import (EVENTS_FILE, METRICS_FILE, MetricsH5Writer, load_metrics,  # noqa: F401 - the run's files
                         read_metrics_h5, write_metrics_h5)

CONFIG_FILE = "config.json"
EVALUATIONS_FILE = "evaluations.jsonl"
CHECKPOINT_DIR = "checkpoints"
LAST_CHECKPOINT = "last.pt"


def runs_root(workspace) -> Path:
    """The folder holding a workspace's runs."""
    return Path(workspace) / "runs"


def library_versions() -> dict:
    """Versions of the libraries that decide a run's numbers."""
    import numpy
    import torch
    versions = {"python": platform.python_version(), "torch": torch.__version__, "numpy": numpy.__version__}
    try:
        import torchvision
        versions["torchvision"] = torchvision.__version__
    except ImportError:  # pragma: no cover - torchvision is a hard dependency
        pass
    from . import __version__
    versions["ssl_workbench"] = __version__
    return versions


def new_run_id(cfg: ExperimentConfig) -> str:
    """A sortable, readable id: date-time, method, backbone (and name when given)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    parts = [stamp, cfg.method.name, cfg.model.backbone]
    if cfg.name:
        parts.append(re.sub(r"[^A-Za-z0-9_.-]+", "-", cfg.name).strip("-")[:40])
    return "-".join(p for p in parts if p)


def create_run(workspace, cfg: ExperimentConfig, run_id: str | None = None) -> Path:
    """Make a new run directory with its config.json and return its path."""
    root = runs_root(workspace)
    root.mkdir(parents=True, exist_ok=True)
    base = run_id or new_run_id(cfg)
    run_dir, n = root / base, 1
    while run_dir.exists():
        n += 1
        run_dir = root / f"{base}-{n}"
    run_dir.mkdir()
    (run_dir / CHECKPOINT_DIR).mkdir()
    write_run_config(run_dir, cfg)
    return run_dir


def write_run_config(run_dir, cfg: ExperimentConfig, device: str | None = None) -> None:
    """Write config.json atomically: the resolved config plus seed, versions and device."""
    run_dir = Path(run_dir)
    payload = {"config": cfg.to_dict(), "seed": cfg.runtime.seed, "versions": library_versions(),
               "device": device or cfg.runtime.device, "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
    old = run_dir / CONFIG_FILE
    if old.exists():
        try:
            payload["created"] = json.loads(old.read_text()).get("created", payload["created"])
        except (OSError, json.JSONDecodeError):
            pass
    tmp = run_dir / (CONFIG_FILE + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    os.replace(tmp, old)


def read_run_config(run_dir) -> ExperimentConfig:
    """The run's validated ExperimentConfig; ConfigError names config.json when it is bad."""
    path = Path(run_dir) / CONFIG_FILE
    try:
        payload = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path} does not exist: is {run_dir} a run directory?") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path} is not readable JSON: {exc}") from None
    data = payload.get("config", payload) if isinstance(payload, dict) else payload
    try:
        return ExperimentConfig.from_dict(data)
    except ConfigError as exc:
        raise ConfigError([f"{path}: {e}" for e in exc.errors]) from None


def run_events(run_dir) -> list[dict]:
    """All complete events of a run."""
    return read_events(Path(run_dir) / EVENTS_FILE)


def record_evaluation(run_dir, result: dict) -> None:
    """Append one evaluation result (with the parameters that produced it) to evaluations.jsonl."""
    line = json.dumps({"time": round(time.time(), 3), **result})
    with open(Path(run_dir) / EVALUATIONS_FILE, "a", encoding="utf-8") as fh:
        fh.write(line + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def read_evaluations(run_dir) -> list[dict]:
    """Every stored evaluation result of a run (torn lines skipped)."""
    path = Path(run_dir) / EVALUATIONS_FILE
    if not path.exists():
        return []
    results = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            results.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return results


def checkpoint_path(run_dir, name: str = LAST_CHECKPOINT) -> Path:
    """Path of a checkpoint file inside a run."""
    return Path(run_dir) / CHECKPOINT_DIR / name


def list_checkpoints(run_dir) -> list[Path]:
    """Committed checkpoints of a run: last.pt first, then epoch checkpoints in order."""
    folder = Path(run_dir) / CHECKPOINT_DIR
    if not folder.is_dir():
        return []
    epochs = sorted(folder.glob("epoch-*.pt"))
    last = folder / LAST_CHECKPOINT
    return ([last] if last.exists() else []) + epochs


@dataclass
class RunSummary:
    """What the runs browser shows for one run, derived from its directory alone."""

    run_dir: Path
    run_id: str
    name: str = ""
    method: str = "?"
    backbone: str = "?"
    data: str = "?"
    epochs: int = 0
    epoch: int = 0
    step: int = 0
    state: str = "created"
    message: str = ""
    best_knn: float | None = None
    last_time: float = 0.0
    has_checkpoint: bool = False
    evaluations: list = field(default_factory=list)

    def update_from(self, ledger: RunLedger) -> None:
        """Take state, message, counters and best kNN from a run's ledger (the config fields stay)."""
        self.state, self.message = ledger.state, ledger.message
        self.step, self.epoch, self.best_knn = ledger.step, ledger.epoch, ledger.best_knn
        self.epochs = ledger.epochs or self.epochs
        self.last_time = ledger.last_time
        self.has_checkpoint = self.has_checkpoint or ledger.has_checkpoint


def config_summary(run_dir) -> RunSummary:
    """A run's summary from config.json alone (what it trains; no progress yet); a bad config
    shows as state 'invalid' with the reason as message."""
    run_dir = Path(run_dir)
    summary = RunSummary(run_dir=run_dir, run_id=run_dir.name)
    try:
        cfg = read_run_config(run_dir)
    except ConfigError as exc:
        summary.state, summary.message = "invalid", str(exc)
        return summary
    summary.name, summary.method, summary.backbone = cfg.name, cfg.method.name, cfg.model.backbone
    summary.data, summary.epochs = cfg.data.source, cfg.schedule.epochs
    return summary


def run_files_stamp(run_dir) -> tuple:
    """(mtime_ns, size) or None for config.json, events.jsonl, evaluations.jsonl and the last
    checkpoint: what changes when a run's summary may change."""
    run_dir = Path(run_dir)
    stamp = []
    for path in (run_dir / CONFIG_FILE, run_dir / EVENTS_FILE, run_dir / EVALUATIONS_FILE, checkpoint_path(run_dir)):
        try:
            st = os.stat(path)
            stamp.append((st.st_mtime_ns, st.st_size))
        except OSError:
            stamp.append(None)
    return tuple(stamp)


class RunReader:
    """A run's summary kept up to date from its files at O(what changed): events.jsonl is folded
    from where the previous read stopped, config.json and evaluations.jsonl are re-read only when
    their modification time or size changed; nothing changed, nothing is read (the same summary
    object comes back)."""

    def __init__(self, run_dir):
        self.run_dir = Path(run_dir)
        self.stamp: tuple | None = None
        self.summary: RunSummary | None = None
        self._config: RunSummary | None = None
        self._config_stamp = None
        self._evaluations: list = []
        self._restart()

    def _restart(self) -> None:
        self._tail = EventTail(self.run_dir / EVENTS_FILE)
        self._ledger = RunLedger(keep_series=False, max_logs=1)

    def _config_summary(self, config_stamp) -> RunSummary:
        if self._config is None or config_stamp != self._config_stamp:
            self._config, self._config_stamp = config_summary(self.run_dir), config_stamp
        return self._config

    def _with(self, ledger: RunLedger) -> RunSummary:
        summary = dataclasses.replace(self._config, evaluations=self._evaluations)
        if summary.state != "invalid":
            summary.update_from(ledger)
        return summary

    @property
    def events_read(self) -> int:
        """Events folded so far (each event of the file once, unless it was rewritten)."""
        return self._ledger.n_events

    def read(self) -> RunSummary:
        """The run's summary now ('interrupted' without a terminal event, 'invalid' with a bad config)."""
        stamp = run_files_stamp(self.run_dir)
        if stamp == self.stamp and self.summary is not None:
            return self.summary
        old, self.stamp = self.stamp or (None,) * 4, stamp
        if self._config_summary(stamp[0]).state == "invalid":
            self.summary = self._config
            return self.summary
        if stamp[1] is None or (old[1] is not None and stamp[1][1] < old[1][1]):
            self._restart()  # the events file went or shrank (rewritten): fold it again
        self._ledger.apply(self._tail.read_new(final=True))
        if stamp[2] != old[2]:
            self._evaluations = read_evaluations(self.run_dir)
        self.summary = self._with(self._ledger)
        self.summary.state = self._ledger.settled_state()  # no terminal event: running now, or killed
        self.summary.has_checkpoint = stamp[3] is not None
        return self.summary

    def with_ledger(self, ledger: RunLedger) -> RunSummary:
        """The run's summary with progress from ``ledger`` (a run training in this session: its
        growing events file is not read; config.json only when it changed)."""
        self._config_summary(run_files_stamp(self.run_dir)[0])
        return self._with(ledger)


def summarize_run(run_dir) -> RunSummary:
    """Summarise a run from config.json and events.jsonl (folded by a ``RunLedger``); a bad config
    shows as state 'invalid', a run without a terminal event as 'interrupted'."""
    return RunReader(run_dir).read()


def list_runs(workspace) -> list[RunSummary]:
    """Summaries of every run directory under ``<workspace>/runs``, newest first."""
    root = runs_root(workspace)
    if not root.is_dir():
        return []
    dirs = [p for p in root.iterdir() if p.is_dir() and (p / CONFIG_FILE).exists()]
    return sorted((summarize_run(p) for p in dirs), key=lambda s: s.run_id, reverse=True)
