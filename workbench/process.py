"""The trainer process controller: one QProcess per run (never threads or multiprocessing).

``TrainerController`` starts ``python -m backend train --run-dir DIR [--resume]
--exit-on-stdin-eof`` (with ``processes`` > 1: the same under ``python -m torch.distributed.run
--standalone --nproc_per_node=N``, one process per GPU of this machine; rank 0 writes the run,
reads the commands and prints the events), parses its stdout JSON lines into events, forwards control commands on
stdin, and feeds the parsed events into the run's ledger (``RunState``), which also decides how the
run ended from its events and the exit code (``RunLedger.outcome``: a signal, a non-zero exit without
an error event, or an error event marked ``unexpected`` is ``crashed``, with the last lines of the
trainer's output). A live trainer silent for longer than the
stall timeout (``settings.stall_timeout_seconds``) shows as ``stalled`` until it speaks again;
``stop()`` twice, or ``kill()``, ends it at once (state ``killed``).
"""

from __future__ import annotations

import functools
import json
import os
import signal
import sys
import time
from collections import deque
from pathlib import Path

from PySide6.QtCore import QObject, QProcess, QProcessEnvironment, QTimer, Signal

from backend.events import parse_event_line
from backend.runs import checkpoint_path

from . import settings
from .run_state import RunState

PROJECT_ROOT = Path(__file__).resolve().parent.parent
COMMANDS = ("stop", "pause", "resume", "checkpoint")
DETACHED_FILE = "detached.json"  # {pid}: a trainer left training when the workbench closed
LOG_TAIL_LINES = 3  # lines of the trainer's output quoted when it crashes
# States in which silence is expected (paused; a trainer that has reported its end and is exiting)
# or already reported.
NOT_WATCHED = ("paused", "stalled", "finished", "stopped", "error", "crashed")


@functools.lru_cache(maxsize=1)
def available_devices() -> list[tuple[str, str]]:
    """(label, runtime.device) for the CPU and each CUDA device; queried once per process."""
    devices = [("CPU", "cpu")]
    try:
        import torch
        for i in range(torch.cuda.device_count()):
            devices.append((f"CUDA:{i}  {torch.cuda.get_device_name(i)}", f"cuda:{i}"))
    except Exception:  # no torch / broken driver: the CPU still works
        pass
    return devices


def gpu_count(devices: list[tuple[str, str]]) -> int:
    """CUDA devices in ``devices`` (what ``available_devices`` found in the warm-up worker: the GUI
    thread never imports torch to count them); tests replace it."""
    return sum(1 for _, device in devices if device.startswith("cuda"))


def warm_up(ctx=None) -> list[tuple[str, str]]:
    """Worker: import the heavy libraries a launch needs (so the GUI thread never waits on them)
    and return ``available_devices()``."""
    try:
        import torchvision  # noqa: F401 - create_run records its version
    except Exception:
        pass
    return available_devices()


def trainer_arguments(run_dir, resume: bool = False) -> list[str]:
    """Arguments (after the interpreter) that train ``run_dir``."""
    args = ["-m", "backend", "train", "--run-dir", str(run_dir), "--exit-on-stdin-eof"]
    if resume:
        args.append("--resume")
    return args


def trainer_command(run_dir, resume: bool = False, processes: int = 1) -> list[str]:
    """Arguments (after the interpreter) that train ``run_dir`` in ``processes`` processes: the
    single-process trainer, or that trainer under torchrun on this machine (the command
    ``sslwb train --nproc N`` relaunches itself with)."""
    if not isinstance(processes, int) or processes < 1:
        raise ValueError(f"processes must be a whole number >= 1, got {processes!r}")
    args = trainer_arguments(run_dir, resume)
    if processes == 1:
        return args
    return ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}", *args]


def child_pids(pid: int) -> list[int]:
    """The direct children of process ``pid`` (Linux /proc; [] where it cannot be read)."""
    out = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            out += [int(c) for c in (task / "children").read_text().split()]
    except OSError:
        return []
    return out


class _TrainerProcess(QProcess):
    """A QProcess that can let its child go: a QProcess destroyed while running kills it."""

    def forget(self) -> None:
        """From now on this object no longer owns the child (it is left running)."""
        self.setProcessState(QProcess.ProcessState.NotRunning)


class TrainerController(QObject):
    """Runs and controls the trainer of one run. Signals arrive on the GUI thread:
    ``eventsReceived(list)`` batches of event dicts, ``outputLine(str, str)`` (stream, text) for
    non-event output, ``exited(str, str)`` (final state, message) once the process is gone."""

    eventsReceived = Signal(list)
    outputLine = Signal(str, str)
    exited = Signal(str, str)

    def __init__(self, state: RunState, parent: QObject | None = None, processes: int = 1):
        super().__init__(parent)
        self.state = state
        self.processes = processes   # > 1: torchrun, one process per GPU
        self.run_dir = state.run_dir
        self.process: QProcess | None = None
        self.stderr_tail: deque[str] = deque(maxlen=40)
        self.log_tail: deque[str] = deque(maxlen=40)  # stderr, stray stdout, log/status/error events
        self.stall_timeout_s = settings.stall_timeout_seconds()
        self._last_output = time.monotonic()
        self._before_stall: tuple[str, str] | None = None
        self._kill_requested = ""
        self._watchdog = QTimer(self)
        self._watchdog.timeout.connect(self._check_stall)
        self._stdout_buf = b""
        self._stderr_buf = b""
        self._stop_requested = False

    # ---- lifecycle ----------------------------------------------------------------------
    def start(self, resume: bool = False) -> None:
        """Start the trainer (``resume``: continue from checkpoints/last.pt)."""
        if self.is_running():
            return
        self._stop_requested = False
        self._kill_requested, self._before_stall = "", None
        self.stderr_tail.clear()
        self.log_tail.clear()
        proc = _TrainerProcess(self)
        env = QProcessEnvironment.systemEnvironment()
        env.insert("PYTHONUNBUFFERED", "1")
        path = env.value("PYTHONPATH", "")
        env.insert("PYTHONPATH", str(PROJECT_ROOT) + (os.pathsep + path if path else ""))
        env.remove("QT_QPA_PLATFORM")
        proc.setProcessEnvironment(env)
        proc.setProgram(sys.executable)
        proc.setArguments(trainer_command(self.run_dir, resume, self.processes))
        proc.readyReadStandardOutput.connect(self._read_stdout)
        proc.readyReadStandardError.connect(self._read_stderr)
        proc.finished.connect(self._on_finished)
        proc.errorOccurred.connect(self._on_error)
        self.process = proc
        self.state.exit_code = None
        self.state.set_live(True)  # a new segment of the run's ledger
        self.state.set_state("starting", "resuming from the last checkpoint" if resume else "starting the trainer")
        self._last_output = time.monotonic()
        self._watchdog.start(int(max(100, min(1000, 250 * self.stall_timeout_s))))
        proc.start()

    def is_running(self) -> bool:
        """True while the trainer process exists."""
        return self.process is not None and self.process.state() != QProcess.ProcessState.NotRunning

    def send(self, command: str) -> bool:
        """Write one control command (stop, pause, resume, checkpoint) to the trainer's stdin."""
        if command not in COMMANDS or not self.is_running():
            return False
        if command == "stop":
            self._stop_requested = True
            self.state.set_state("stopping", "stopping after the current step (a checkpoint is saved)")
        self.process.write((command + "\n").encode())
        return True

    def stop(self) -> bool:
        """Ask the trainer to checkpoint and exit after its current step; asked a second time
        (the trainer has not exited yet), kill it at once."""
        if self._stop_requested and self.is_running():
            self.kill("stopped by force (a second Stop) before the trainer finished its step")
            return True
        return self.send("stop")

    def pause(self) -> bool:
        """Pause between steps."""
        return self.send("pause")

    def resume(self) -> bool:
        """Continue a paused trainer."""
        return self.send("resume")

    def checkpoint(self) -> bool:
        """Save a checkpoint now."""
        return self.send("checkpoint")

    def kill(self, reason: str = "killed on request") -> None:
        """Kill the process at once (SIGKILL; it ends as ``killed``, resumable from its last
        checkpoint). Under torchrun its workers first: they run in sessions of their own and
        would outlive a killed torchrun."""
        if self.is_running():
            self._kill_requested = reason
            if self.processes > 1:
                for pid in child_pids(int(self.process.processId())):
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except OSError:   # already gone
                        pass
            self.process.kill()

    def detach(self) -> int | None:
        """Leave the trainer training after the workbench closes: send ``detach`` (it ignores the
        end of stdin from now on), record its PID in the run's ``detached.json`` and let the
        process go. Returns the PID (None when no trainer runs)."""
        if not self.is_running():
            return None
        pid = int(self.process.processId())
        self.process.write(b"detach\n")
        self.process.waitForBytesWritten(2000)
        (self.run_dir / DETACHED_FILE).write_text(json.dumps({"pid": pid}))
        self._watchdog.stop()
        proc, self.process = self.process, None
        for signal in (proc.readyReadStandardOutput, proc.readyReadStandardError, proc.finished, proc.errorOccurred):
            signal.disconnect()
        proc.closeWriteChannel()
        proc.closeReadChannel(QProcess.ProcessChannel.StandardOutput)  # its output: events.jsonl has it
        proc.closeReadChannel(QProcess.ProcessChannel.StandardError)
        proc.forget()
        return pid

    # ---- stall watchdog -------------------------------------------------------------------
    def _note_output(self) -> None:
        """The trainer spoke: reset the stall clock and leave the ``stalled`` state."""
        self._last_output = time.monotonic()
        if self._before_stall is not None:
            state, message = self._before_stall
            self._before_stall = None
            if self.state.state == "stalled":
                self.state.set_state(state, message)

    def _check_stall(self) -> None:
        if not self.is_running():
            self._watchdog.stop()
            return
        silent = time.monotonic() - self._last_output
        if silent < self.stall_timeout_s or self.state.state in NOT_WATCHED:
            return
        self._before_stall = (self.state.state, self.state.message)
        self.state.set_state("stalled", f"no output from the trainer for {silent:.0f} s (stall timeout "
                                        f"{self.stall_timeout_s:g} s) while it is still running at step "
                                        f"{self.state.step}: it may be hung. Kill it, or wait")

    def shutdown(self, timeout_ms: int = 15000) -> None:
        """Stop gracefully (stop command, then stdin closed), kill after ``timeout_ms``."""
        if not self.is_running():
            return
        if not self._stop_requested:
            self.send("stop")
        self.process.closeWriteChannel()
        if not self.process.waitForFinished(timeout_ms):
            self.process.kill()
            self.process.waitForFinished(3000)

    # ---- output -------------------------------------------------------------------------
    def _read_stdout(self) -> None:
        data = self._stdout_buf + bytes(self.process.readAllStandardOutput().data())
        if data:
            self._note_output()
        lines = data.split(b"\n")
        self._stdout_buf = lines.pop()
        self.handle_stdout(lines)

    def handle_stdout(self, lines) -> None:
        """Complete stdout lines (bytes) of the trainer: events go into the run's ledger (then
        ``eventsReceived``), other text to ``outputLine``."""
        events = []
        for raw in lines:
            text = raw.decode("utf-8", errors="replace").rstrip("\r")
            event = parse_event_line(text)
            if event is None:
                if text.strip():
                    self.log_tail.append(text)
                    self.outputLine.emit("stdout", text)
                continue
            if event["kind"] == "error":
                self.log_tail.append(f"error: {event.get('message', '')}")
            elif event["kind"] == "status":
                self.log_tail.append(f"{event.get('state', '')}: {event.get('message', '')}")
            elif event["kind"] == "log":
                self.log_tail.append(f"{event.get('level', 'info')}: {event.get('message', '')}")
            events.append(event)
        if events:
            self.state.apply_events(events)
            self.eventsReceived.emit(events)

    def _read_stderr(self) -> None:
        data = self._stderr_buf + bytes(self.process.readAllStandardError().data())
        if data:
            self._note_output()
        lines = data.split(b"\n")
        self._stderr_buf = lines.pop()
        self.handle_stderr(lines)

    def handle_stderr(self, lines) -> None:
        """Complete stderr lines (bytes) of the trainer: kept for the crash message, relayed."""
        for raw in lines:
            text = raw.decode("utf-8", errors="replace").rstrip("\r")
            if text.strip():
                self.stderr_tail.append(text)
                self.log_tail.append(text)
                self.outputLine.emit("stderr", text)

    def _flush(self) -> None:
        if self.process is None:
            return
        self._read_stdout()
        self._read_stderr()
        if self._stdout_buf:
            self.handle_stdout([self._stdout_buf])
            self._stdout_buf = b""
        if self._stderr_buf:
            self.handle_stderr([self._stderr_buf])
            self._stderr_buf = b""

    # ---- ending -------------------------------------------------------------------------
    def outcome(self, exit_code: int, crashed: bool) -> tuple[str, str]:
        """(state, message) for a process that ended with ``exit_code`` / by a signal (the ledger's
        rule, given what only the controller knows: a kill it asked for, the output's last lines)."""
        tail = " | ".join(list(self.stderr_tail or self.log_tail)[-LOG_TAIL_LINES:])
        return self.state.ledger.outcome(exit_code, crashed, self._kill_requested, tail)

    def _on_finished(self, exit_code: int, exit_status) -> None:
        self._watchdog.stop()
        self._flush()
        crashed = exit_status == QProcess.ExitStatus.CrashExit
        state, message = self.outcome(exit_code, crashed)
        self.state.exit_code = None if crashed else exit_code
        self.state.live = False
        self.state.has_checkpoint = checkpoint_path(self.run_dir).exists()
        if state in ("crashed", "killed"):  # the trainer could not say so itself: into the run's log
            self.state.apply_events([{"kind": "status", "time": round(time.time(), 3), "state": state,
                                      "message": message}])
        else:
            self.state.set_state(state, message)
        self.exited.emit(state, message)

    def _on_error(self, error) -> None:
        if error == QProcess.ProcessError.FailedToStart:
            self._watchdog.stop()
            self.state.live = False
            message = f"could not start the trainer ({sys.executable}): {self.process.errorString()}"
            self.state.set_state("crashed", message)
            self.exited.emit("crashed", message)
