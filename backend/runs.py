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

import numpy as np

from .config import ExperimentConfig
from . import faults
from .errors import ConfigError, write_error
from .events import EventTail, TERMINAL_STATES, metric_series, parse_event_line, read_events
from .ledger import RunLedger

CONFIG_FILE = "config.json"
EVENTS_FILE = "events.jsonl"
METRICS_FILE = "metrics.h5"
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


def load_metrics(run_dir) -> dict[str, dict[str, np.ndarray]]:
    """Metric columns {name: {step, epoch, value, time}} from events.jsonl (the source of truth),
    falling back to metrics.h5 when the events file is gone."""
    run_dir = Path(run_dir)
    events_path = run_dir / EVENTS_FILE
    if events_path.exists():
        series = metric_series(read_events(events_path))
        return {name: {k: np.asarray(v) for k, v in cols.items()} for name, cols in series.items()}
    return read_metrics_h5(run_dir / METRICS_FILE)


METRIC_COLUMNS = {"step": np.int64, "epoch": np.int64, "value": np.float64, "time": np.float64}


def _h5_group_name(name: str) -> str:
    return name.replace("/", "::")


def _write_series(fh, series: dict) -> None:
    """Create one group per metric with resizable (appendable) column datasets."""
    for name, cols in series.items():
        group = fh.create_group(_h5_group_name(name))
        group.attrs["name"] = name
        for key, dtype in METRIC_COLUMNS.items():
            group.create_dataset(key, data=np.asarray(cols[key], dtype=dtype), maxshape=(None,),
                                 chunks=(256,))


def write_metrics_h5(run_dir) -> Path:
    """(Re)build metrics.h5 from the whole events.jsonl, atomically (temp file then os.replace).
    Cost grows with the run; the trainer appends with :class:`MetricsH5Writer` instead."""
    import h5py

    run_dir = Path(run_dir)
    series = metric_series(read_events(run_dir / EVENTS_FILE))
    target = run_dir / METRICS_FILE
    tmp = run_dir / (METRICS_FILE + ".tmp")
    try:
        with h5py.File(tmp, "w") as fh:
            if faults.disk_full("metrics"):
                raise faults.enospc()
            _write_series(fh, series)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)  # a refused write leaves no temp file (the old file is untouched)
    return target


class MetricsH5Writer:
    """Keeps metrics.h5 up to date by appending what events.jsonl gained since the last update.

    The first ``update()`` of a writer rebuilds the file from the whole events file (atomically,
    as :func:`write_metrics_h5`), which applies the resume cut (points of a killed segment after
    the ``resumed`` step are dropped) and repairs a file a kill left behind; later updates read
    only the new complete lines (from a byte offset) and append them to resizable datasets, so
    their cost does not depend on the run's length. The file is open only during an update."""

    def __init__(self, run_dir):
        self.run_dir = Path(run_dir)
        self.offset: int | None = None   # bytes of events.jsonl already in metrics.h5 (None: rebuild)

    def update(self) -> Path:
        """Bring metrics.h5 up to date with events.jsonl; returns its path. A write the disk refuses
        raises WriteError; a file an append left half-written is removed (it is derived data: the
        next update, or the next start, rebuilds it from events.jsonl; readers fall back to events)."""
        try:
            return self._update()
        except (OSError, RuntimeError) as exc:
            target = self.run_dir / METRICS_FILE
            if self.offset is not None:
                target.unlink(missing_ok=True)
            self.offset = None
            raise write_error(target, exc, "training stopped; events.jsonl holds every metric and "
                                           "metrics.h5 is rebuilt from it - free some space and resume") from None

    def _update(self) -> Path:
        events_path = self.run_dir / EVENTS_FILE
        target = self.run_dir / METRICS_FILE
        if self.offset is None or not target.exists():
            size = events_path.stat().st_size if events_path.exists() else 0
            write_metrics_h5(self.run_dir)
            self.offset = self._complete_prefix(events_path, size)
            return target
        events, self.offset = self._read_new(events_path, self.offset)
        if events:
            self._append(target, events)
        return target

    @staticmethod
    def _complete_prefix(path: Path, size: int) -> int:
        """Bytes up to the last newline within the first ``size`` bytes (a torn tail is not read)."""
        if size == 0:
            return 0
        with open(path, "rb") as fh:
            start = max(0, size - 65536)
            fh.seek(start)
            chunk = fh.read(size - start)
        cut = chunk.rfind(b"\n")
        return start + cut + 1 if cut >= 0 else (self._complete_prefix(path, start) if start else 0)

    @staticmethod
    def _read_new(path: Path, offset: int) -> tuple[list[dict], int]:
        with open(path, "rb") as fh:
            fh.seek(offset)
            data = fh.read()
        end = data.rfind(b"\n") + 1
        events = []
        for line in data[:end].decode("utf-8", errors="replace").splitlines():
            event = parse_event_line(line)
            if event is not None:
                events.append(event)
        return events, offset + end

    @staticmethod
    def _append(target: Path, events: list[dict]) -> None:
        import h5py

        with h5py.File(target, "a") as fh:
            if faults.disk_full("metrics"):
                raise faults.enospc()
            start = 0
            for i, event in enumerate(events):
                if event.get("kind") == "status" and event.get("state") == "resumed" and "step" in event:
                    _append_series(fh, metric_series(events[start:i]))
                    _cut_after(fh, int(event["step"]))
                    start = i + 1
            _append_series(fh, metric_series(events[start:]))


def _append_series(fh, series: dict) -> None:
    """Append columns to existing groups (created resizable when new)."""
    for name, cols in series.items():
        group = fh.get(_h5_group_name(name))
        if group is None:
            _write_series(fh, {name: cols})
            continue
        n = len(cols["step"])
        for key, dtype in METRIC_COLUMNS.items():
            ds = group[key]
            old = ds.shape[0]
            ds.resize((old + n,))
            ds[old:] = np.asarray(cols[key], dtype=dtype)


def _cut_after(fh, step: int) -> None:
    """Drop every stored point after ``step`` (the resume cut)."""
    for group in fh.values():
        keep = group["step"][()] <= step
        if keep.all():
            continue
        for key in METRIC_COLUMNS:
            values = group[key][()][keep]
            group[key].resize((len(values),))
            group[key][:] = values


def read_metrics_h5(path) -> dict[str, dict[str, np.ndarray]]:
    """Read metrics.h5 into {name: {column: array}} (empty when missing)."""
    import h5py

    path = Path(path)
    if not path.exists():
        return {}
    out = {}
    with h5py.File(path, "r") as fh:
        for group in fh.values():
            out[group.attrs.get("name", group.name)] = {k: group[k][()] for k in group}
    return out


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
