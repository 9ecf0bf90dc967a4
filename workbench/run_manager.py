"""All runs the GUI knows about in this session: their states and trainer controllers (model side).

The main window and runs browser observe it; it creates run directories with ``backend.runs``,
starts/resumes trainers through ``TrainerController`` and relays their output as log lines.
"""

from __future__ import annotations

import functools
import os
import time
from pathlib import Path

from PySide6.QtCore import QObject, Signal

from backend.config import ExperimentConfig
from backend.errors import WorkbenchError
from backend.runs import checkpoint_path, create_run, read_run_config, write_run_config

from .process import TrainerController
from .reattach import DetachedController, detached_trainer
from .run_state import RunState


def run_key(run_dir) -> str:
    """A stable dictionary key for a run directory (absolute paths are resolved once and
    remembered: views ask for keys on every repaint, and resolving touches the disk)."""
    path = os.fspath(run_dir)
    return _resolved(path) if os.path.isabs(path) else str(Path(path).resolve())


@functools.lru_cache(maxsize=4096)
def _resolved(path: str) -> str:
    return str(Path(path).resolve())


class RunManager(QObject):
    """Signals: ``runAdded(RunState)`` when a run becomes known, ``runChanged(RunState)`` on any
    state change, ``logLine(run_id, level, text)`` for log events and trainer output. The states
    (and the ledgers in them) live as long as the manager: closing a run's tab loses nothing."""

    runAdded = Signal(object)
    runChanged = Signal(object)
    logLine = Signal(str, str, str)

    def __init__(self, workspace, parent: QObject | None = None):
        super().__init__(parent)
        self.workspace = Path(workspace)
        self.states: dict[str, RunState] = {}
        self.controllers: dict[str, TrainerController] = {}
        self.processes: dict[str, int] = {}   # run key -> trainer processes it was launched with

    # ---- queries ------------------------------------------------------------------------
    def state(self, run_dir) -> RunState | None:
        """The known state of a run, if any."""
        return self.states.get(run_key(run_dir))

    def controller(self, run_dir) -> TrainerController | None:
        """The run's trainer controller while its trainer runs (None once it has exited)."""
        return self.controllers.get(run_key(run_dir))

    def live_runs(self) -> list[RunState]:
        """Runs whose trainer is running now."""
        return [s for s in self.states.values() if s.live]

    def live_states(self) -> dict[str, RunState]:
        """run key -> state of every run whose trainer is running in this session (the runs
        browser shows these from their ledgers instead of re-reading their growing files)."""
        return {key: s for key, s in self.states.items() if s.live}

    # ---- actions ------------------------------------------------------------------------
    def launch(self, cfg: ExperimentConfig, device: str | None = None, processes: int = 1) -> RunState:
        """Create a run directory for ``cfg`` (on ``device``) and start its trainer (in
        ``processes`` torchrun processes when > 1; a resume in this session uses as many)."""
        if device:
            cfg.runtime.device = device
        run_dir = create_run(self.workspace, cfg)
        state = self._add(run_dir)
        state.epochs, state.name = cfg.schedule.epochs, cfg.name
        self.processes[run_key(run_dir)] = processes
        self.start(state, resume=False)
        return state

    def open(self, run_dir) -> RunState:
        """Make a run known from its directory alone (its files are folded into the run's ledger
        once; nothing is started)."""
        state = self.state(run_dir)
        if state is None:
            state = self._add(run_dir)
            pid = detached_trainer(run_dir)
            if pid is None:
                state.load_files()
                state.poll_lock()  # another process may be writing it ("in use by ...")
            else:  # left training when the workbench last closed: follow it live again
                try:
                    cfg = read_run_config(run_dir)
                    state.epochs, state.name = cfg.schedule.epochs, cfg.name
                except WorkbenchError:
                    pass
                ctl = DetachedController(state, pid, self)
                self.controllers[run_key(run_dir)] = ctl
                ctl.exited.connect(lambda st, msg, s=state: self.logLine.emit(s.run_id, "info", f"{st}: {msg}"))
                ctl.exited.connect(lambda *_a, c=ctl: self._forget(c))
                ctl.start()
        return state

    def resume(self, run_dir) -> RunState:
        """Restart the trainer of a stopped/crashed run from its last checkpoint (not while
        another process writes it: ``state.in_use`` says so)."""
        state = self.open(run_dir)
        state.poll_lock()
        if state.in_use:
            self.logLine.emit(state.run_id, "error", f"not resumed: in use by {state.holder}")
        elif not state.live:
            self.start(state, resume=True)
        return state

    def poll_locks(self) -> None:
        """Re-read the writer locks of the known runs that no trainer of this GUI runs (cheap: a
        missing file per run), so "in use by ..." appears and goes; called on the runs browser's
        refresh timer."""
        for state in list(self.states.values()):
            state.poll_lock()

    def command(self, run_dir, command: str) -> bool:
        """Send stop/pause/resume/checkpoint to a run's trainer; ``kill`` kills it. A second
        ``stop`` before the trainer has exited escalates to a kill."""
        ctl = self.controller(run_dir)
        if ctl is None or not ctl.is_running():
            return False
        if command == "kill":
            ctl.kill()
            return True
        return ctl.stop() if command == "stop" else ctl.send(command)

    def kill(self, run_dir) -> None:
        """Kill a run's trainer at once."""
        ctl = self.controller(run_dir)
        if ctl is not None:
            ctl.kill()

    def relaunch_on_cpu(self, run_dir) -> RunState:
        """Set the run's runtime.device to ``cpu`` and start it again (from its checkpoint when it
        has one): the answer to "CUDA was asked for but this machine has none"."""
        state = self.open(run_dir)
        if state.live:
            return state
        try:
            cfg = read_run_config(run_dir)
            cfg.runtime.device = "cpu"
            write_run_config(run_dir, cfg)
        except (WorkbenchError, OSError) as exc:
            state.set_state("error", f"cannot switch the run to the CPU: {exc}")
            return state
        self.processes.pop(run_key(run_dir), None)   # one process on the CPU
        self.logLine.emit(state.run_id, "status", "runtime.device set to cpu; starting again on the CPU")
        self.start(state, resume=checkpoint_path(run_dir).exists())
        return state

    def detach_all(self) -> int:
        """Leave every trainer started here training after the workbench closes (see
        ``TrainerController.detach``); returns how many."""
        count = 0
        for key, ctl in self.controllers.items():
            if isinstance(ctl, TrainerController) and ctl.detach() is not None:
                self.states[key].live = False
                count += 1
        return count

    def shutdown(self, timeout_ms: int = 15000) -> None:
        """Stop every running trainer (checkpointing), killing those that do not exit in time.
        All are asked first, so they checkpoint in parallel."""
        live = [ctl for ctl in self.controllers.values() if ctl.is_running()]
        for ctl in live:
            ctl.send("stop")
        deadline = time.monotonic() + timeout_ms / 1000
        for ctl in live:
            ctl.shutdown(max(100, int(1000 * (deadline - time.monotonic()))))

    # ---- internals ----------------------------------------------------------------------
    def _add(self, run_dir) -> RunState:
        state = RunState(Path(run_dir), self)
        self.states[run_key(run_dir)] = state
        state.changed.connect(lambda s=state: self.runChanged.emit(s))
        self.runAdded.emit(state)
        return state

    def start(self, state: RunState, resume: bool) -> None:
        """Start (``resume``: continue from its checkpoint) the trainer of a known run, in a new
        controller feeding the run's ledger."""
        old = self.controllers.get(run_key(state.run_dir))
        if old is not None:
            old.deleteLater()
        ctl = TrainerController(state, self, processes=self.processes.get(run_key(state.run_dir), 1))
        self.controllers[run_key(state.run_dir)] = ctl
        ctl.eventsReceived.connect(lambda events, s=state: self._log_events(s, events))
        ctl.outputLine.connect(lambda stream, text, s=state: self.logLine.emit(
            s.run_id, "stderr" if stream == "stderr" else "info", text))
        ctl.exited.connect(lambda st, msg, s=state: self.logLine.emit(
            s.run_id, "error" if st in ("error", "crashed") else "info", f"{st}: {msg}"))
        ctl.exited.connect(lambda *_a, s=state: s.poll_lock())  # e.g. refused: another process has it
        ctl.exited.connect(lambda *_a, c=ctl: self._forget(c))
        ctl.start(resume=resume)

    def _forget(self, ctl) -> None:
        """A trainer has exited: let its controller go (with its finished QProcess and its watchdog
        QTimer), or a long session keeps one of each per run it ever trained."""
        key = run_key(ctl.run_dir)
        if self.controllers.get(key) is ctl:
            del self.controllers[key]
        ctl.deleteLater()

    def _log_events(self, state: RunState, events: list[dict]) -> None:
        for event in events:
            kind = event.get("kind")
            if kind == "log":
                self.logLine.emit(state.run_id, event.get("level", "info"), event.get("message", ""))
            elif kind == "status":
                self.logLine.emit(state.run_id, "status", f"{event.get('state')}: {event.get('message', '')}")
            elif kind == "error":
                self.logLine.emit(state.run_id, "error", event.get("message", ""))
