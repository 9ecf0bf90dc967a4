"""The GUI's side of the workspace's run queue: start the next queued run when a device slot is
free, through the run manager (so it trains in a ``TrainerController`` and gets its tab like a
launch), and record its start and end in ``queue.json``.

``backend.run_queue.RunQueue`` is the only keeper of the queue (file, order, states, slots and
the settling of entries whose trainer is gone); this object only polls it on a timer and turns
its picks into trainer processes. A ``sslwb queue --run`` or ``sslwb sweep`` in another process
shares the same file: the slots its trainers hold count as busy here too.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject, QTimer, Signal

from backend.config import ExperimentConfig
from backend.errors import WorkbenchError
from backend.run_queue import RunQueue, assign_device, device_slots
from backend.runs import checkpoint_path, create_run, read_run_config

from . import settings
from .run_manager import RunManager, run_key

CPU_RUNS_KEY = "queue/cpu_runs"
AUTOSTART_KEY = "queue/autostart"


def _int(value, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


class QueueRunner(QObject):
    """Signals: ``entriesChanged(list[QueueEntry])`` after every poll, ``runStarted(str)`` with the
    run dir of a run it started, ``runEnded(str, str)`` (run dir, queue state) and ``message(str)``.
    ``max_cpu_runs``: CPU runs at once (remembered; default 1); one run per GPU always.
    ``autostart``: whether queued runs are started at all (remembered; default on)."""

    entriesChanged = Signal(list)
    runStarted = Signal(str)
    runEnded = Signal(str, str)
    message = Signal(str)

    def __init__(self, manager: RunManager, workspace, parent: QObject | None = None, poll_ms: int = 1000):
        super().__init__(parent)
        self.manager = manager
        self.queue = RunQueue(workspace)
        self.max_cpu_runs = max(0, _int(settings.value(CPU_RUNS_KEY, 1), 1))
        self.autostart = str(settings.value(AUTOSTART_KEY, "true")).lower() not in ("false", "0")
        self.entries: list = []
        self.error = ""
        self._ours: dict[str, object] = {}  # run key -> the controller of a run this runner started
        self._gpus: list[str] | None = None
        self._devices: dict[str, str] = {}  # run key -> runtime.device of a hand-launched run
        self._closing = False
        self._polling = False
        self.timer = QTimer(self)
        self.timer.timeout.connect(self.poll)
        self.timer.start(poll_ms)
        QTimer.singleShot(0, self.poll)

    # ---- settings -----------------------------------------------------------------------
    def set_workspace(self, workspace) -> None:
        """Follow another workspace's queue (runs started from the old one keep training)."""
        self.queue = RunQueue(workspace)
        self.poll()

    def set_max_cpu_runs(self, n: int) -> None:
        """How many runs may train on the CPU at once (remembered)."""
        self.max_cpu_runs = max(0, int(n))
        settings.set_value(CPU_RUNS_KEY, self.max_cpu_runs)
        self.poll()

    def set_autostart(self, on: bool) -> None:
        """Start queued runs when slots free up, or leave them queued (remembered)."""
        self.autostart = bool(on)
        settings.set_value(AUTOSTART_KEY, "true" if on else "false")
        self.poll()

    def gpus(self) -> list[str]:
        """The machine's CUDA devices (one queue slot each); asked once."""
        if self._gpus is None:
            from .process import available_devices
            self._gpus = [device for _label, device in available_devices() if device != "cpu"]
        return self._gpus

    def known_gpus(self) -> list[str]:
        """The GPUs found so far (empty until a queued run made the runner look)."""
        return list(self._gpus or [])

    def slots(self) -> list[str]:
        """Every device slot: one per GPU, ``max_cpu_runs`` on the CPU."""
        return device_slots(self.max_cpu_runs, self.gpus())

    # ---- queue edits (all through the backend queue) ---------------------------------------
    def add(self, cfg: ExperimentConfig, device: str | None = None) -> Path:
        """Create a run from ``cfg`` and queue it (on ``device`` or its runtime.device)."""
        if device:
            cfg.runtime.device = device
        run_dir = create_run(self.queue.workspace, cfg)
        self.queue.enqueue([run_dir], device=cfg.runtime.device)
        self.poll()
        return run_dir

    def enqueue(self, run_dirs, device: str = "auto") -> None:
        """Queue existing runs (again, when done or failed)."""
        self.queue.enqueue(run_dirs, device=device)
        self.poll()

    def move(self, run_dir, offset: int) -> None:
        """Move a queued run sooner (negative) or later."""
        self.queue.move(run_dir, offset)
        self.poll()

    def remove(self, run_dir) -> None:
        """Take a run that is not training out of the queue (its directory stays)."""
        entry = self.queue.get(run_dir)
        if entry is not None and entry.state == "started":
            raise WorkbenchError(f"{Path(run_dir).name} is training: stop it before taking it out of the queue")
        self.queue.remove(run_dir, missing_ok=True)
        self.poll()

    def clear_finished(self) -> None:
        """Drop the done entries."""
        for entry in self.queue.entries():
            if entry.state == "done":
                self.queue.remove(entry.run_dir, missing_ok=True)
        self.poll()

    # ---- scheduling ---------------------------------------------------------------------
    def _own_pids(self) -> set:
        pids = set()
        for ctl in self._ours.values():
            process = getattr(ctl, "process", None)
            if process is not None:
                pids.add(int(process.processId()) or None)
        return pids

    def poll(self) -> None:
        """Settle entries whose trainer is gone, start what fits in the free slots, publish the entries."""
        if self._polling:
            return
        self._polling = True
        try:
            if not self.queue.path.exists():  # no queue in this workspace yet (and no lock file made)
                self.entries = []
                self.entriesChanged.emit([])
                return
            self.queue.reconcile(own_pids=self._own_pids())
            if self.autostart and not self._closing:
                while self._start_next():
                    pass
            entries = self.queue.entries()
            self.error = ""
        except WorkbenchError as exc:
            if str(exc) != self.error:
                self.error = str(exc)
                self.message.emit(f"run queue: {exc}")
            entries = []
        except OSError as exc:
            self.error = f"run queue: {exc}"
            entries = []
        finally:
            self._polling = False
        self.entries = entries
        self.entriesChanged.emit(entries)

    def _hand_launched_devices(self, slots) -> list[str]:
        """Devices of runs training in this window that the queue did not start (Launch, Resume):
        they hold a slot too."""
        in_queue = {run_key(e.run_dir) for e in self.queue.entries() if e.state == "started"}
        devices = []
        for key, state in self.manager.live_states().items():
            if key in in_queue or key in self._ours:
                continue
            if key not in self._devices:
                try:
                    self._devices[key] = read_run_config(state.run_dir).runtime.device
                except WorkbenchError:
                    self._devices[key] = "cpu"
            device = self._devices[key]
            if device in ("auto", "cuda"):
                device = next((s for s in slots if s.startswith("cuda")), "cpu")
            devices.append(device)
        return devices

    def _start_next(self) -> bool:
        queued = [e for e in self.queue.entries() if e.state == "queued"]
        if not queued:
            return False
        slots = self.slots()
        free = self.queue.free_slots(slots)
        for device in self._hand_launched_devices(slots):
            if device in free:
                free.remove(device)
        pick = self.queue.next_startable(free, any(s.startswith("cuda") for s in slots))
        if pick is None:
            return False
        entry, device = pick
        run_dir = Path(entry.run_dir)
        state = self.manager.state(run_dir)
        if state is not None and state.live:  # already training in this window (e.g. launched by hand)
            self.queue.mark_started(run_dir, None, device)
            return True
        if not (run_dir / "config.json").exists():
            self.queue.mark_started(run_dir, None, device)
            self.queue.mark_done(run_dir, 2)
            self.message.emit(f"run queue: {run_dir} has no config.json (marked failed)")
            return True
        try:
            assign_device(run_dir, device)
        except WorkbenchError:
            pass  # the trainer reports the bad config itself (error event, exit code 2)
        state = self.manager.open(run_dir)
        self.manager.start(state, resume=checkpoint_path(run_dir).exists())
        ctl = self.manager.controller(run_dir)
        self._ours[run_key(run_dir)] = ctl
        pid = int(ctl.process.processId()) if ctl.process is not None else 0
        self.queue.mark_started(run_dir, pid or None, device)
        ctl.exited.connect(lambda st, _msg, d=run_dir: self._ended(d, st))
        self.runStarted.emit(str(run_dir))
        return True

    def _ended(self, run_dir: Path, state: str) -> None:
        self._ours.pop(run_key(run_dir), None)
        if self._closing and state in ("stopped", "killed"):
            return  # stopped by closing the window: the entry stays started, and the next session
            # finds its trainer gone and queues it again (it resumes from its checkpoint)
        run_state = self.manager.state(run_dir)
        code = run_state.exit_code if run_state is not None else None
        if code is None:  # ended by a signal (crashed, killed): no exit code of its own
            code = 0 if state == "finished" else 1
        try:
            entry = self.queue.mark_done(run_dir, code)
        except WorkbenchError:
            entry = None  # taken out of the queue meanwhile
        self.runEnded.emit(str(run_dir), entry.state if entry else state)
        QTimer.singleShot(0, self.poll)

    def shutdown(self) -> None:
        """The window is closing: start nothing more; runs stopped from now on stay queued."""
        self._closing = True
        self.timer.stop()

