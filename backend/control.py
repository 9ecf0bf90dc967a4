"""Trainer control: stdin commands (stop, pause, resume, checkpoint) and SIGTERM, as flags the
training loop polls between steps (DESIGN.md trainer-process contract)."""

from __future__ import annotations

import signal
import sys
import threading

COMMANDS = ("stop", "pause", "resume", "checkpoint")


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
        self._stream = stream if stream is not None else sys.stdin
        if read_stdin and self._stream is not None:
            threading.Thread(target=self._read_commands, name="stdin-control", daemon=True).start()

    def install_signal_handlers(self) -> None:
        """SIGTERM (and SIGINT): finish the current step, checkpoint, exit 0."""
        def on_signal(signum, _frame):
            self.request("stop", reason=f"signal {signal.Signals(signum).name}")
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
        self.wake.set()

    def _read_commands(self) -> None:
        try:
            for line in self._stream:
                command = line.strip().lower()
                if command in COMMANDS:
                    self.request(command, reason="stop requested on stdin")
        except (OSError, ValueError):
            pass
        if self.exit_on_eof:
            self.request("stop", reason="the controlling process went away (stdin closed)")

    def wait_while_paused(self, on_pause=None, on_resume=None) -> None:
        """Block between steps while paused (returns at once otherwise, or when stopped)."""
        if not self.paused.is_set():
            return
        if on_pause:
            on_pause()
        while self.paused.is_set() and not self.stop_requested.is_set():
            self.wake.wait(0.2)
            self.wake.clear()
        if on_resume and not self.stop_requested.is_set():
            on_resume()
