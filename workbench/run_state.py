"""The observable state of one run: a Qt model around the run's ``backend.ledger.RunLedger``.

The run manager holds one ``RunState`` per run it knows, so a run's series, log lines and counters
outlive the tab that shows them. Everything is folded by the ledger; this class adds what only the
GUI knows (whether a trainer process of this run is running here) and re-emits each change.
"""

from __future__ import annotations

import re
from pathlib import Path

from PySide6.QtCore import QObject, Signal

from backend.errors import ConfigError
from backend.ledger import ACTIVE, ENDED, RESUMABLE, LedgerUpdate, RunLedger, format_duration
from backend.run_lock import lock_holder
from backend.runs import checkpoint_path, read_run_config, run_events

__all__ = ["ACTIVE", "ENDED", "RESUMABLE", "RunState", "format_duration", "run_label"]


def run_label(name: str, run_id: str) -> str:
    """'my name · 20261201-105500-simclr-resnet18' (the id alone when the run has no name; the
    name the id ends with is not repeated)."""
    if not name:
        return run_id
    slug = "-" + re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-")[:40]
    short = run_id[:-len(slug)] if slug != "-" and run_id.endswith(slug) else run_id
    return f"{name} · {short}"


def _ledger_field(name: str, doc: str) -> property:
    def get(self):
        return getattr(self.ledger, name)

    def put(self, value):
        setattr(self.ledger, name, value)

    return property(get, put, doc=doc)


class RunState(QObject):
    """What is known about one run. ``updated(LedgerUpdate)`` fires after every batch of changes
    (new events, or a state the controller set) and ``changed`` right after it; ``reloaded``
    when the ledger was replaced by a fresh one read from the files (after another process that
    wrote the run let it go)."""

    changed = Signal()
    updated = Signal(object)
    reloaded = Signal()

    state = _ledger_field("state", "Lifecycle state ('running', 'finished', 'crashed', ...).")
    message = _ledger_field("message", "The latest status / error message.")
    step = _ledger_field("step", "The latest optimisation step.")
    epoch = _ledger_field("epoch", "The 0-based epoch of the latest metric.")
    epochs = _ledger_field("epochs", "Total epochs (0 = unknown).")
    total_steps = _ledger_field("total_steps", "Total steps (0 = unknown).")
    steps_per_epoch = _ledger_field("steps_per_epoch", "Steps per epoch (0 = unknown).")
    has_checkpoint = _ledger_field("has_checkpoint", "Whether checkpoints/last.pt exists (as far as known).")
    exit_code = _ledger_field("exit_code", "The trainer's exit code, when it exited.")

    def __init__(self, run_dir, parent: QObject | None = None):
        super().__init__(parent)
        self.run_dir = Path(run_dir)
        self.run_id = self.run_dir.name
        self.ledger = RunLedger()
        self.live = False
        self.detached = False  # live in a trainer left running by an earlier session (Stop only)
        self.name = ""  # the user's name for the run (config ``name``)
        self.holder = ""  # "PID 12 on host h since 10:41 (sslwb train)": another process writes the run

    @property
    def latest(self) -> dict[str, float]:
        """The latest value of each metric."""
        return self.ledger.latest

    # ---- updates ------------------------------------------------------------------------
    def apply_events(self, events: list[dict], *, notify: bool = True) -> LedgerUpdate:
        """Fold a batch of events into the ledger and announce what changed."""
        update = self.ledger.apply(events)
        if notify and update:
            self._announce(update)
        return update

    def _announce(self, update: LedgerUpdate) -> None:
        self.updated.emit(update)
        self.changed.emit()

    def set_state(self, state: str, message: str | None = None) -> None:
        """Set the state directly (process start/exit, stall) and notify."""
        self._announce(self.ledger.set_state(state, message))

    def set_live(self, live: bool) -> None:
        """Whether a trainer process of this run is running in this GUI (a new one starts a new
        segment of the ledger: its error, last status and step rate are its own)."""
        self.live = live
        if live:
            self.ledger.begin_segment()
        self._announce(LedgerUpdate(status=True))

    def load_files(self) -> None:
        """Fill the ledger from the run's directory (config totals, every event so far, the
        checkpoint) for a run opened from its files; without a terminal event it is 'interrupted'."""
        try:
            cfg = read_run_config(self.run_dir)
            self.ledger.epochs, self.name = cfg.schedule.epochs, cfg.name
        except ConfigError as exc:
            self._announce(self.ledger.set_state("invalid", str(exc)))
            return
        update = self.ledger.apply(run_events(self.run_dir))
        self.ledger.settle()
        self.ledger.has_checkpoint = checkpoint_path(self.run_dir).exists()
        update.status = True
        self._announce(update)

    def poll_lock(self) -> bool:
        """Re-read who holds the run's writer lock (``holder``; '' while a trainer of this GUI runs
        it) and announce a change; when the other writer has let the run go, re-read the run's
        files (it has written more). Returns whether the holder changed."""
        info = None if self.live else lock_holder(self.run_dir)
        holder = info.describe() if info is not None else ""
        if holder == self.holder:
            return False
        released, self.holder = bool(self.holder and not holder), holder
        if released and not self.live:
            self.reload()
        else:
            self._announce(LedgerUpdate(status=True))
        return True

    def reload(self) -> None:
        """Replace the ledger by a fresh one folded from the run's files."""
        self.ledger = RunLedger()
        self.load_files()
        self.reloaded.emit()  # views observing the old ledger switch to this one

    # ---- derived ------------------------------------------------------------------------
    @property
    def in_use(self) -> bool:
        """Whether another process (not a trainer of this GUI) holds the run's writer lock."""
        return bool(self.holder) and not self.live

    @property
    def resumable(self) -> bool:
        """A dead run with a checkpoint to continue from, that no other process writes."""
        return not self.live and not self.in_use and self.has_checkpoint and self.state in RESUMABLE

    def progress(self) -> float | None:
        """Fraction done in [0, 1], or None when unknown."""
        return self.ledger.fraction()

    def eta_seconds(self) -> float | None:
        """Seconds left (the ledger's ETA; None unless a trainer runs here)."""
        return self.ledger.eta_seconds() if self.live else None

    def progress_text(self) -> str:
        """'epoch 3/15 · step 120/600 · ETA 0:42' (parts that are known)."""
        return self.ledger.progress_text(self.live)
