"""The live dashboard's model: per-metric growing numpy buffers fed from trainer events.

Plain Python (no Qt) so it is testable on its own. ``MetricStore.add_events`` is cheap (an append
per metric event); the view asks ``take_dirty()`` on its timer tick and redraws only the metrics
that changed. The stale-point rule is the one of ``backend.events.metric_series``: a ``resumed``
status event with ``step`` k drops every earlier point whose step is after k.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from backend.events import TERMINAL_STATES

INITIAL_CAPACITY = 256
MAX_PENDING_LOGS = 2000  # the log pane keeps about this many lines; older pending ones are moot


class Progress(NamedTuple):
    """Where a run stands: 1-based epoch in progress, step, totals (0 = unknown), ETA (None = unknown)."""

    epoch: int
    step: int
    total_epochs: int
    eta_seconds: float | None
    total_steps: int = 0


class Series:
    """One metric's points (step, epoch, value, time) in numpy buffers whose capacity doubles."""

    __slots__ = ("step", "epoch", "value", "time", "n")

    def __init__(self, capacity: int = INITIAL_CAPACITY):
        self.step = np.empty(capacity, np.int64)
        self.epoch = np.empty(capacity, np.int64)
        self.value = np.empty(capacity, np.float64)
        self.time = np.empty(capacity, np.float64)
        self.n = 0

    def __len__(self) -> int:
        return self.n

    def append(self, step: int, epoch: int, value: float, t: float) -> None:
        """Add one point, doubling the buffers when full."""
        n = self.n
        if n == len(self.value):
            self._resize(2 * n)
        self.step[n] = step
        self.epoch[n] = epoch
        self.value[n] = value
        self.time[n] = t
        self.n = n + 1

    def _resize(self, capacity: int) -> None:
        n = self.n
        for key in ("step", "epoch", "value", "time"):
            old = getattr(self, key)
            new = np.empty(max(capacity, INITIAL_CAPACITY), old.dtype)
            new[:n] = old[:n]
            setattr(self, key, new)

    def truncate_after(self, cut: int) -> bool:
        """Keep only points with step <= cut (the resume rule); True when something was dropped.
        Fresh buffers are allocated so arrays already handed to a plot are never rewritten."""
        keep = self.step[:self.n] <= cut
        if keep.all():
            return False
        kept = int(keep.sum())
        for key in ("step", "epoch", "value", "time"):
            old = getattr(self, key)
            new = np.empty(max(len(old), INITIAL_CAPACITY), old.dtype)
            new[:kept] = old[:self.n][keep]
            setattr(self, key, new)
        self.n = kept
        return True

    @property
    def steps(self) -> np.ndarray:
        """Steps of the points so far (a view)."""
        return self.step[:self.n]

    @property
    def epochs(self) -> np.ndarray:
        """Epochs (0-based, as emitted) of the points so far (a view)."""
        return self.epoch[:self.n]

    @property
    def values(self) -> np.ndarray:
        """Values of the points so far (a view; NaN where the trainer sent a non-finite value)."""
        return self.value[:self.n]

    @property
    def times(self) -> np.ndarray:
        """Event wall-clock times of the points so far (a view)."""
        return self.time[:self.n]

    def last(self) -> float | None:
        """The latest value, or None when empty."""
        return float(self.value[self.n - 1]) if self.n else None


class MetricStore:
    """All metrics of one run, plus the run's lifecycle state, pending log lines and progress.

    ``revision`` increases on every change; ``take_dirty()`` returns (and forgets) the names of the
    metrics changed since the last call, so a view redraws only those.
    """

    def __init__(self):
        self.series: dict[str, Series] = {}
        self.revision = 0
        self._dirty: set[str] = set()
        self._logs: list[dict] = []
        self.state = ""
        self.message = ""
        self.step = 0
        self.epoch = 0
        self.total_steps = 0
        self.steps_per_epoch = 0
        self.total_epochs = 0
        self.last_time = 0.0
        self._anchor: tuple[float, int] | None = None  # (time, step) where the ETA rate is measured from

    # ---- feeding ---------------------------------------------------------------------------
    def add_events(self, events) -> None:
        """Consume trainer events in order (metrics, status, log and error)."""
        series, dirty = self.series, self._dirty
        for event in events:
            kind = event.get("kind")
            if kind == "metric":
                value = event.get("value")
                name = event.get("name")
                if name is None or not isinstance(value, (int, float)):
                    continue
                s = series.get(name)
                if s is None:
                    s = series[name] = Series()
                step = int(event.get("step", 0))
                epoch = int(event.get("epoch", 0))
                t = float(event.get("time", 0.0))
                s.append(step, epoch, value if math.isfinite(value) else math.nan, t)
                dirty.add(name)
                self.step, self.epoch, self.last_time = step, epoch, t
                if self._anchor is None:
                    self._anchor = (t, step)
            elif kind == "status":
                self._status(event)
            elif kind in ("log", "error"):
                self._logs.append(event)
        if len(self._logs) > MAX_PENDING_LOGS:
            del self._logs[:-MAX_PENDING_LOGS]
        self.revision += 1

    def _status(self, event: dict) -> None:
        if event.get("state") != "checkpoint":  # a checkpoint is an aside, not a lifecycle change
            self.state = event.get("state", self.state)
            self.message = event.get("message", "")
        self.last_time = float(event.get("time", self.last_time))
        for key in ("total_steps", "steps_per_epoch"):
            if isinstance(event.get(key), int):
                setattr(self, key, event[key])
        if isinstance(event.get("epochs"), int):
            self.total_epochs = event["epochs"]
        if self.state == "resumed" and "step" in event:
            cut = int(event["step"])
            for name, s in self.series.items():
                if s.truncate_after(cut):
                    self._dirty.add(name)
            self.step = cut
        if self.state in ("resumed", "running", "paused"):
            self._anchor = None  # time spent down or paused does not count towards the step rate
        self._logs.append(event)

    # ---- reading ---------------------------------------------------------------------------
    def take_dirty(self) -> set[str]:
        """Names of the metrics changed since the previous call (and forget them)."""
        dirty, self._dirty = self._dirty, set()
        return dirty

    def mark_dirty(self, name: str) -> None:
        """Have ``name`` redrawn on the next tick (a view that postponed it)."""
        self._dirty.add(name)

    def has_dirty(self) -> bool:
        """Whether a metric changed since the last ``take_dirty``."""
        return bool(self._dirty)

    def take_logs(self) -> list[dict]:
        """Log, error and status events received since the previous call."""
        logs, self._logs = self._logs, []
        return logs

    def get(self, name: str) -> Series | None:
        """The series of a metric, or None."""
        return self.series.get(name)

    def last(self, name: str) -> float | None:
        """The latest value of a metric, or None."""
        s = self.series.get(name)
        return s.last() if s is not None else None

    def columns(self) -> dict[str, dict[str, list]]:
        """Plain columns in the shape of ``backend.events.metric_series`` (for checks and export)."""
        return {name: {"step": s.steps.tolist(), "epoch": s.epochs.tolist(),
                       "value": s.values.tolist(), "time": s.times.tolist()}
                for name, s in self.series.items() if s.n}

    def progress(self) -> Progress:
        """Epoch (1-based, in progress), step, totals and an ETA from the step rate since the
        first metric after the last start/resume (ETA 0 once finished, None when unknown)."""
        total_epochs = self.total_epochs
        epoch = min(self.epoch + 1, total_epochs) if total_epochs else self.epoch + 1
        eta = None
        if self.state == "finished":
            eta = 0.0
        elif self.state not in TERMINAL_STATES and self.total_steps and self._anchor is not None:
            t0, s0 = self._anchor
            if self.step > s0 and self.last_time > t0:
                rate = (self.step - s0) / (self.last_time - t0)
                eta = max(0.0, (self.total_steps - self.step) / rate)
        return Progress(epoch, self.step, total_epochs, eta, self.total_steps)


# ---- collapse ----------------------------------------------------------------------------------
def projector_dim(store: MetricStore, configured: int | None = None) -> float | None:
    """The projector output dimension D: from the config when known, else estimated from the
    first embedding_std points (healthy std is about 1/sqrt(D), so D ~ 1/std^2). The estimate
    is rough and only sets the warning level; a run collapsed from its first step reads as a large
    D, and the effective-rank test still catches it."""
    if configured:
        return float(configured)
    s = store.get("embedding_std")
    if s is None or s.n == 0:
        return None
    first = sorted(v for v in s.values[:3].tolist() if math.isfinite(v) and v > 0)
    return 1.0 / first[len(first) // 2] ** 2 if first else None  # the median of up to three


def collapse_reason(store: MetricStore, dim: float | None, probe_size: int | None = None) -> str:
    """A one-line warning when the latest projector metrics look collapsed, else ''. The rule is
    the trainer's own (backend.collapse), applied to the last point: used for runs whose trainer
    predates its collapse events and for overlays. Without ``dim`` only the rank is judged."""
    from backend.collapse import collapse_reasons

    std, rank = store.last("embedding_std"), store.last("effective_rank")
    d = int(round(dim)) if dim else None
    unknown = 10 ** 9  # no limit from an unknown width or probe size
    return "; ".join(collapse_reasons(std if std is not None and d else math.nan,
                                      rank if rank is not None else math.nan,
                                      d or unknown, probe_size or d or unknown))
