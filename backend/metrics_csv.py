"""Every metric of a run as one long-format CSV: ``step,epoch,name,value,time``.

:func:`write_metrics_csv` rebuilds ``<run>/metrics.csv`` from the run's ledger (events.jsonl folded
by :class:`backend.ledger.RunLedger`, so a resumed run's discarded steps are gone), rows ordered by
step then metric name; written atomically. :class:`MetricsCsvSink` appends rows as metric events
arrive (attach ``sink.on_event`` to the trainer's EventWriter; ``flush()`` at checkpoints).
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from .ledger import RunLedger
from .runs import EVENTS_FILE
from .events import read_events

CSV_FILE = "metrics.csv"
HEADER = ("step", "epoch", "name", "value", "time")


def metric_rows(run_dir) -> list[tuple]:
    """(step, epoch, name, value, time) of every metric point of a run, by step then name."""
    ledger = RunLedger(keep_series=True)
    ledger.apply(read_events(Path(run_dir) / EVENTS_FILE))
    rows = []
    for name, s in ledger.series.items():
        rows += [(int(st), int(ep), name, float(v), float(t))
                 for st, ep, v, t in zip(s.steps, s.epochs, s.values, s.times)]
    rows.sort(key=lambda r: (r[0], r[2], r[4]))
    return rows


def write_metrics_csv(run_dir, out=None) -> Path:
    """Write the run's metrics CSV (default ``<run>/metrics.csv``) atomically; returns its path."""
    out = Path(out) if out is not None else Path(run_dir) / CSV_FILE
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(HEADER)
        for step, epoch, name, value, t in metric_rows(run_dir):
            writer.writerow((step, epoch, name, repr(value), f"{t:.3f}"))
    os.replace(tmp, out)
    return out


class MetricsCsvSink:
    """Appends each metric event to a CSV as it arrives (header written when the file is new).
    Unlike :func:`write_metrics_csv` it does not drop steps a resume discards."""

    def __init__(self, path):
        self.path = Path(path)
        new = not self.path.exists() or self.path.stat().st_size == 0
        self._fh = open(self.path, "a", newline="", encoding="utf-8")
        self._csv = csv.writer(self._fh)
        if new:
            self._csv.writerow(HEADER)

    def on_event(self, event: dict) -> None:
        """Write a metric event as one row; other events flush at checkpoints and the end."""
        if event.get("kind") == "metric" and isinstance(event.get("value"), (int, float)):
            self._csv.writerow((event.get("step"), event.get("epoch"), event.get("name"),
                                repr(float(event["value"])), f"{float(event.get('time', 0.0)):.3f}"))
        elif event.get("kind") in ("status", "error"):
            self._fh.flush()

    def flush(self) -> None:
        """Push written rows to disk."""
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        """Close the file."""
        if not self._fh.closed:
            self._fh.close()
