"""Trainer control: stdin commands (stop, pause, resume, checkpoint, detach) and SIGTERM, as flags
the training loop polls between steps (docs/ARCHITECTURE.md: trainer-process contract).

``detach`` tells a trainer started with ``exit_on_eof`` that its workbench is closing on purpose
and the run should keep training: end of stdin no longer stops it (SIGTERM still does)."""

from __future__ import annotations

import signal
import sys
import threading
import time

COMMANDS = ("stop", "pause", "resume", "checkpoint", "detach")
STOP_FROM_WORKBENCH = "stopped from the workbench"
WORKBENCH_CLOSED = "the workbench closed"


class TrainerControl:
    """Collects control requests from a stdin reader thread and signal handlers.

    ``exit_on_eof``: treat end of stdin as "the parent is gone" and stop (the GUI passes it, so a
    trainer whose GUI died saves and exits); without it EOF is ignored (e.g. stdin is /dev/null)."""

    def __init__(self, *, read_stdin: bool = True, exit_on_eof: bool = False, stream=None):
        self.stop_requested = threading.Event()
        self.checkpoint_requested = threading.Event()
        self.paused = threading.Event()
        self.wake = threading.Event()
        self.stop_reason = ""
        self.exit_on_eof = exit_on_eof
        self.detached = False
        self.paused_seconds = 0.0  # total time spent paused (subtract it from wall-clock timings)
        self._stream = stream if stream is not None else sys.stdin
        if read_stdin and self._stream is not None:
            threading.Thread(target=self._read_commands, name="stdin-control", daemon=True).start()

    def install_signal_handlers(self) -> None:
        """SIGTERM (and SIGINT): finish the current step, checkpoint, exit 0."""
        def on_signal(signum, _frame):
            name = signal.Signals(signum).name
            self.request("stop", reason="interrupted (Ctrl+C)" if name == "SIGINT" else f"{name} received")
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                signal.signal(sig, on_signal)
            except ValueError:  # not in the main thread (tests)
                pass

    def request(self, command: str, reason: str = "") -> None:
        """Apply one control command."""
        if command == "stop":
            self.stop_reason = reason or "stop requested"
            self.stop_requested.set()
            self.paused.clear()
        elif command == "pause":
            self.paused.set()
        elif command == "resume":
            self.paused.clear()
        elif command == "checkpoint":
            self.checkpoint_requested.set()
        elif command == "detach":
            self.detached = True
        self.wake.set()

    def take_checkpoint_request(self) -> bool:
        """True once per checkpoint request (the training loop is the only taker): the flag is
        cleared as it is read, so a request that arrives later, while the loop is busy (for
        example in a collective with the other ranks), waits for the next poll instead of being
        cleared unseen."""
        if not self.checkpoint_requested.is_set():
            return False
        self.checkpoint_requested.clear()
        return True

    def _read_commands(self) -> None:
        try:
            for line in self._stream:
                command = line.strip().lower()
                if command in COMMANDS:
                    self.request(command, reason=STOP_FROM_WORKBENCH)
        except (OSError, ValueError):
            pass
        if self.exit_on_eof and not self.detached and not self.stop_requested.is_set():
            self.request("stop", reason=WORKBENCH_CLOSED)

    def wait_while_paused(self, on_pause=None, on_resume=None, on_checkpoint=None) -> None:
        """Block between steps while paused (returns at once otherwise, or when stopped). With
        ``on_checkpoint``, a checkpoint requested while paused is written at once (the request is
        cleared first); without it the request waits for the loop after resuming. The time spent
        here is added to ``paused_seconds``."""
        if not self.paused.is_set():
            return
        start = time.perf_counter()
        if on_pause:
            on_pause()
        try:
            while self.paused.is_set() and not self.stop_requested.is_set():
                if on_checkpoint is not None and self.take_checkpoint_request():
                    on_checkpoint()
                    continue
                self.wake.wait(0.2)
                self.wake.clear()
        finally:
            self.paused_seconds += time.perf_counter() - start
        if on_resume and not self.stop_requested.is_set():
            on_resume()
