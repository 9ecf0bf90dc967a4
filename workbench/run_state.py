"""The observable state of one run (model side of a run tab and of the runs browser's live rows).

``RunState`` folds the trainer's events (status / metric / error) into: state, message, step,
epoch, totals, latest metric values and an ETA from the recent step rate.
"""

from __future__ import annotations

import time
from collections import deque
from pathlib import Path

from PySide6.QtCore import QObject, Signal

# States where a run can be resumed from its checkpoint.
RESUMABLE = ("stopped", "crashed", "killed", "interrupted", "error")
# States where the trainer process is gone.
ENDED = ("finished", "stopped", "error", "crashed", "killed", "interrupted", "invalid")
# States of a live trainer ("stalled": alive but silent for longer than the stall timeout).
ACTIVE = ("starting", "loading data", "running", "paused", "stopping", "stalled")


def format_duration(seconds: float | None) -> str:
    """'1:02:03', '4:05' or '' for unknown."""
    if seconds is None or seconds != seconds or seconds < 0:
        return ""
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class RunState(QObject):
    """What is known about one run; ``changed`` fires after every batch of updates and
    ``eventsArrived(list)`` relays the live events (from whichever trainer process runs it)."""

    changed = Signal()
    eventsArrived = Signal(list)

    def __init__(self, run_dir, parent: QObject | None = None):
        super().__init__(parent)
        self.run_dir = Path(run_dir)
        self.run_id = self.run_dir.name
        self.state = "created"
        self.message = ""
        self.step = 0
        self.epoch = 0
        self.epochs = 0
        self.total_steps = 0
        self.steps_per_epoch = 0
        self.has_checkpoint = False
        self.live = False
        self.latest: dict[str, float] = {}
        self.exit_code: int | None = None
        self._rate = deque(maxlen=64)  # (time, step) of recent metric events of this process

    # ---- updates ------------------------------------------------------------------------
    def apply_events(self, events: list[dict], *, notify: bool = True) -> None:
        """Fold a batch of events into the state."""
        for event in events:
            self._apply(event)
        if notify and events:
            self.changed.emit()

    def _apply(self, event: dict) -> None:
        kind = event.get("kind")
        for key in ("total_steps", "steps_per_epoch", "epochs"):
            if isinstance(event.get(key), int):
                setattr(self, key, event[key])
        if kind == "metric":
            step, epoch = event.get("step"), event.get("epoch")
            if isinstance(step, int):
                self.step = step
                self._rate.append((float(event.get("time", time.time())), step))
            if isinstance(epoch, int):
                self.epoch = epoch
            if isinstance(event.get("value"), (int, float)) and "name" in event:
                self.latest[event["name"]] = float(event["value"])
        elif kind == "status":
            state = event.get("state", "")
            message = event.get("message", "")
            if isinstance(event.get("step"), int):
                self.step = event["step"]
            if isinstance(event.get("epoch"), int):
                self.epoch = event["epoch"]
            if state == "checkpoint":
                self.has_checkpoint = True
                self.message = message
                return
            if state in ("started", "resumed"):
                self._rate.clear()
            self.state = {"started": "running", "resumed": "running",
                          "loading_data": "loading data"}.get(state, state)
            self.message = message
        elif kind == "error":
            # "unexpected": the trainer hit a bug (an exception it did not expect), not a problem
            # with the settings or the data; it shows as a crash at once, before the process exits.
            self.state = "crashed" if event.get("unexpected") else "error"
            self.message = event.get("message", "")
            self.exit_code = event.get("exit_code", self.exit_code)

    def set_state(self, state: str, message: str | None = None) -> None:
        """Set the state directly (process start/exit) and notify."""
        self.state = state
        if message is not None:
            self.message = message
        self.changed.emit()

    def set_live(self, live: bool) -> None:
        """Whether a trainer process of this run is running in this GUI."""
        self.live = live
        if live:
            self._rate.clear()
        self.changed.emit()

    def load_summary(self, summary) -> None:
        """Fill from a ``backend.runs.RunSummary`` (a run opened from its directory)."""
        self.state, self.message = summary.state, summary.message
        self.step, self.epoch, self.epochs = summary.step, summary.epoch, summary.epochs
        self.has_checkpoint = summary.has_checkpoint
        if summary.best_knn is not None:
            self.latest["knn_top1"] = summary.best_knn
        self.changed.emit()

    # ---- derived ------------------------------------------------------------------------
    @property
    def resumable(self) -> bool:
        """A dead run with a checkpoint to continue from."""
        return not self.live and self.has_checkpoint and self.state in RESUMABLE

    def progress(self) -> float | None:
        """Fraction done in [0, 1], or None when unknown."""
        if self.state == "finished":
            return 1.0
        if self.total_steps:
            return min(1.0, self.step / self.total_steps)
        if self.epochs:
            return min(1.0, self.epoch / self.epochs)
        return None

    def steps_per_second(self) -> float | None:
        """Recent optimisation steps per second (None until two points exist)."""
        if len(self._rate) < 2:
            return None
        (t0, s0), (t1, s1) = self._rate[0], self._rate[-1]
        if t1 <= t0 or s1 <= s0:
            return None
        return (s1 - s0) / (t1 - t0)

    def eta_seconds(self) -> float | None:
        """Seconds left at the recent rate (None when unknown or not running)."""
        rate = self.steps_per_second()
        if not self.live or rate is None or not self.total_steps:
            return None
        return max(0.0, (self.total_steps - self.step) / rate)

    def progress_text(self) -> str:
        """'epoch 3/15 · step 120/600 · ETA 0:42' (parts that are known)."""
        if not self.step and not self.live and self.state in ("error", "crashed", "invalid"):
            return "failed before the first step"
        parts = []
        if self.epochs:
            shown = self.epochs if self.state == "finished" else min(self.epoch + 1, self.epochs)
            parts.append(f"epoch {max(shown, 0)}/{self.epochs}")
        if self.total_steps:
            parts.append(f"step {self.step:,}/{self.total_steps:,}")
        elif self.step:
            parts.append(f"step {self.step:,}")
        eta = format_duration(self.eta_seconds())
        if eta:
            parts.append(f"ETA {eta}")
        return " · ".join(parts) or self.state
