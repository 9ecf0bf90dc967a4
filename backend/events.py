"""The event stream: JSON lines on stdout and appended to ``events.jsonl`` (docs/ARCHITECTURE.md: contract).

Every event has ``kind`` (status | metric | log | error) and ``time``; metrics also carry ``step``,
``epoch``, ``name`` and ``value``. Lines are flushed one by one so a killed trainer leaves every
earlier line intact; readers skip a torn (unterminated or unparsable) last line.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path

from . import faults
from .errors import write_error

EVENT_KINDS = ("status", "metric", "log", "error")
# Status states the trainer reports; the last one of a run says how it ended.
TERMINAL_STATES = ("finished", "stopped", "error")


class EventWriter:
    """Appends events to ``events.jsonl`` and, optionally, echoes them to stdout as JSON lines."""

    def __init__(self, path, *, echo: bool = True, stream=None, on_event=None):
        self.path = Path(path)
        self.echo = echo
        self.stream = stream or sys.stdout
        self.on_event = on_event
        self.write_failed = False   # the file refused a write (disk full): later events are echoed only
        # Unbuffered appends, one os.write per line; a refused write is cut back to the last
        # complete line, so a full disk never leaves a half line behind.
        self._file = open(self.path, "ab", buffering=0)
        self._size = os.fstat(self._file.fileno()).st_size
        if _ends_torn(self.path):
            # A killed writer left half a line: end it, or our first event would be glued onto it
            # and lost with it (readers skip the torn line on its own).
            self._append(b"\n")

    def emit(self, kind: str, **fields) -> dict:
        """Write one event and return it. A write the disk refuses raises WriteError (earlier lines
        intact); the file is then left alone and later events (the error) are only echoed."""
        event = {"kind": kind, "time": round(time.time(), 3), **fields}
        line = json.dumps(event, default=_jsonable, allow_nan=True)
        if not self.write_failed:
            self._append((line + "\n").encode("utf-8"))
        if self.echo:
            try:
                self.stream.write(line + "\n")
                self.stream.flush()
            except (BrokenPipeError, ValueError, OSError):
                self.echo = False  # the reader went away; the file still has everything
        if self.on_event is not None:
            self.on_event(event)
        return event

    def _append(self, data: bytes) -> None:
        fd = self._file.fileno()
        try:
            view = memoryview(data)
            if faults.disk_full("events"):
                os.write(fd, view[:len(view) // 2])
                raise faults.enospc()
            while view:
                view = view[os.write(fd, view):]
            self._size += len(data)
        except OSError as exc:
            self.write_failed = True
            try:
                os.ftruncate(fd, self._size)  # drop the partial line
            except OSError:
                pass
            raise write_error(self.path, exc, "training stopped; every earlier event is intact - free some "
                                              "space and resume") from None

    def metric(self, name: str, value: float, step: int, epoch: int, **extra) -> dict:
        """A scalar metric at an optimisation step."""
        return self.emit("metric", name=name, value=float(value), step=int(step), epoch=int(epoch), **extra)

    def status(self, state: str, message: str = "", **extra) -> dict:
        """A lifecycle change (started, running, paused, resumed, checkpoint, finished, stopped, ...)."""
        return self.emit("status", state=state, message=message, **extra)

    def log(self, message: str, level: str = "info", **extra) -> dict:
        """A human-readable line (level: info or warning)."""
        return self.emit("log", level=level, message=message, **extra)

    def error(self, message: str, exit_code: int, **extra) -> dict:
        """A fatal error in one sentence, with the exit code the process will return."""
        return self.emit("error", message=message, exit_code=int(exit_code), **extra)

    def sync(self) -> None:
        """Force the events file to disk (called at checkpoints)."""
        if not self.write_failed:
            os.fsync(self._file.fileno())

    def close(self) -> None:
        """Close the events file."""
        if not self._file.closed:
            self._file.close()


class NullEventWriter(EventWriter):
    """The writer of non-zero ranks under torchrun: accepts events and writes nothing."""

    def __init__(self):  # noqa: D107 - deliberately opens no file
        self.echo, self.on_event = False, None

    def emit(self, kind: str, **fields) -> dict:
        return {"kind": kind, **fields}

    def sync(self) -> None:
        pass

    def close(self) -> None:
        pass


def _ends_torn(path: Path) -> bool:
    """Whether a non-empty file's last byte is not a newline (a line cut short by a kill)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            if fh.tell() == 0:
                return False
            fh.seek(-1, os.SEEK_END)
            return fh.read(1) != b"\n"
    except OSError:
        return False


def _jsonable(value):
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def parse_event_line(line: str) -> dict | None:
    """Parse one JSON line; None for blank, torn or non-event lines."""
    line = line.strip()
    if not line:
        return None
    try:
        event = json.loads(line)
    except json.JSONDecodeError:
        return None
    if not isinstance(event, dict) or event.get("kind") not in EVENT_KINDS:
        return None
    return event


class EventTail:
    """Incremental reader of an events file: ``read_new()`` returns events appended since the last
    call. A partial last line is left for the next call, so a line being written is never lost
    and a torn line left by a killed writer is skipped. The file is opened read-only per call."""

    def __init__(self, path):
        self.path = Path(path)
        self.offset = 0
        self._partial = b""

    def read_new(self, final: bool = False) -> list[dict]:
        """Events completed since the previous call (empty if the file does not exist yet).
        ``final``: also take an unterminated last line that is a complete event (a writer that
        stopped before its newline; its newline, should it come, reads as a blank line)."""
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self.offset)
                chunk = fh.read()
        except FileNotFoundError:
            return []
        self.offset += len(chunk)
        data = self._partial + chunk
        lines = data.split(b"\n")
        self._partial = lines.pop()  # unterminated remainder (may be b"")
        events = []
        for raw in lines:
            event = parse_event_line(raw.decode("utf-8", errors="replace"))
            if event is not None:
                events.append(event)
        if final and self._partial:
            last = parse_event_line(self._partial.decode("utf-8", errors="replace"))
            if last is not None:  # complete JSON without the newline: keep it
                events.append(last)
                self._partial = b""
        return events


def read_events(path) -> list[dict]:
    """Every complete event in an events file (a torn last line is skipped)."""
    return EventTail(path).read_new(final=True)


def metric_series(events) -> dict[str, dict[str, list]]:
    """Metric events as per-name columns {name: {step, epoch, value, time}}.

    A ``resumed`` status event with ``step`` k drops every earlier point after step k, so a run
    killed after its last checkpoint and resumed from it has no duplicated or stale steps."""
    series: dict[str, dict[str, list]] = {}
    for event in events:
        if event.get("kind") == "status" and event.get("state") == "resumed" and "step" in event:
            cut = event["step"]
            for cols in series.values():
                keep = [i for i, s in enumerate(cols["step"]) if s <= cut]
                if len(keep) != len(cols["step"]):
                    for key in cols:
                        cols[key] = [cols[key][i] for i in keep]
        elif event.get("kind") == "metric":
            value = event.get("value")
            if not isinstance(value, (int, float)) or "name" not in event:
                continue
            cols = series.setdefault(event["name"], {"step": [], "epoch": [], "value": [], "time": []})
            cols["step"].append(int(event.get("step", 0)))
            cols["epoch"].append(int(event.get("epoch", 0)))
            cols["value"].append(float(value) if math.isfinite(value) else float("nan"))
            cols["time"].append(float(event.get("time", 0.0)))
    return series
