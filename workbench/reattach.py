"""Runs left training in the background when the workbench closed ("keep training"): find their
trainer again on reopen and show them live by tailing their events file.

The trainer was told ``detach`` (it ignores the end of its stdin) and its PID was written to the
run's ``detached.json``; it keeps writing ``events.jsonl``. ``DetachedController`` stands in for
a ``TrainerController``: it feeds the run's ledger from the file and stops the trainer with
SIGTERM (the trainer checkpoints and exits 0)."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

from PySide6.QtCore import QObject, QTimer, Signal

from backend.events import EventTail
from backend.runs import EVENTS_FILE, checkpoint_path

from .process import DETACHED_FILE
from .run_state import RunState

POLL_MS = 500


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie has exited
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def detached_trainer(run_dir) -> int | None:
    """The PID of the run's detached trainer when it still runs (its command line names the run);
    None otherwise (a stale record is removed)."""
    path = Path(run_dir) / DETACHED_FILE
    try:
        pid = int(json.loads(path.read_text())["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        cmdline = ""
    run_name = Path(run_dir).name
    if _alive(pid) and (run_name in cmdline or not Path("/proc").is_dir()):
        return pid
    try:
        path.unlink()
    except OSError:
        pass
    return None


class DetachedController(QObject):
    """Follows a detached trainer of ``state``'s run (PID ``pid``). ``exited(state, message)``
    once it has gone."""

    exited = Signal(str, str)

    def __init__(self, state: RunState, pid: int, parent: QObject | None = None):
        super().__init__(parent)
        self.state, self.pid, self.run_dir = state, pid, state.run_dir
        self.tail = EventTail(state.run_dir / EVENTS_FILE)
        self._timer = QTimer(self)
        self._timer.setInterval(POLL_MS)
        self._timer.timeout.connect(self.poll)

    def start(self) -> None:
        """Show the run as live: fold everything written so far, then follow the file."""
        self.state.detached = True
        self.state.set_live(True)
        self.poll()
        if self.state.live:
            self._timer.start()

    def is_running(self) -> bool:
        """True while the trainer process exists."""
        return self.state.live and _alive(self.pid)

    def poll(self) -> None:
        """Fold new events; notice the trainer's end."""
        running = _alive(self.pid)
        events = self.tail.read_new(final=not running)
        if events:
            self.state.apply_events(events)
        if not running:
            self._timer.stop()
            self.state.live = self.state.detached = False
            self.state.ledger.settle()
            self.state.has_checkpoint = checkpoint_path(self.run_dir).exists()
            try:
                (self.run_dir / DETACHED_FILE).unlink()
            except OSError:
                pass
            self.state.set_state(self.state.state, self.state.message)
            self.exited.emit(self.state.state, self.state.message)

    def send(self, command: str) -> bool:
        """Only ``stop`` reaches a detached trainer (as SIGTERM: checkpoint and exit)."""
        if command != "stop" or not self.is_running():
            return False
        os.kill(self.pid, signal.SIGTERM)
        self.state.set_state("stopping", "stopping after the current step (a checkpoint is saved)")
        return True

    def stop(self) -> bool:
        """Stop gracefully (SIGTERM)."""
        return self.send("stop")

    def kill(self, reason: str = "killed on request") -> None:
        """End the trainer at once (SIGKILL)."""
        if self.is_running():
            os.kill(self.pid, signal.SIGKILL)

    def shutdown(self, timeout_ms: int = 0) -> None:
        """Closing the workbench again leaves a detached trainer running."""
        self._timer.stop()
