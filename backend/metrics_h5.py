"""metrics.h5: a run's metric series as h5py columns, appended at checkpoints (``MetricsH5Writer``:
the cost of a checkpoint does not grow with the run's length) and rebuilt from ``events.jsonl``
(the source of truth) when missing or damaged."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from . import faults
from .errors import write_error
from .events import metric_series, parse_event_line, read_events

EVENTS_FILE = "events.jsonl"
METRICS_FILE = "metrics.h5"


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
        return start + cut + 1 if cut >= 0 else (MetricsH5Writer._complete_prefix(path, start) if start else 0)

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

