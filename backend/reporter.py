"""Progress and cancellation for long synchronous backend calls (inspection, export, probes,
fine-tuning): callers pass ``progress(fraction, message)`` and ``cancelled()`` callables; a
:class:`Reporter` forwards the first and raises :class:`backend.errors.Cancelled` on the second."""

from __future__ import annotations

from typing import Callable

from .errors import Cancelled

ProgressFn = Callable[[float, str], None]
CancelledFn = Callable[[], bool]


class Reporter:
    """Forwards ``(fraction, message)`` to an optional ``progress`` callback, mapped into the
    [start, end] part of the whole job, and raises :class:`Cancelled` when ``cancelled()`` says so."""

    def __init__(self, progress: ProgressFn | None = None, cancelled: CancelledFn | None = None,
                 start: float = 0.0, end: float = 1.0):
        self.progress, self.cancelled, self.start, self.end = progress, cancelled, start, end

    def check(self) -> None:
        """Raise Cancelled if the caller asked to stop."""
        if self.cancelled is not None and self.cancelled():
            raise Cancelled("cancelled")

    def __call__(self, fraction: float, message: str = "") -> None:
        self.check()
        if self.progress is not None:
            f = min(max(float(fraction), 0.0), 1.0)
            self.progress(self.start + f * (self.end - self.start), message)

    def sub(self, start: float, end: float) -> "Reporter":
        """A reporter for the [start, end] part of this one."""
        span = self.end - self.start
        return Reporter(self.progress, self.cancelled, self.start + start * span, self.start + end * span)


def as_reporter(progress=None, cancelled=None) -> Reporter:
    """A Reporter from callbacks (or the Reporter itself when one is passed as ``progress``)."""
    if isinstance(progress, Reporter):
        return progress
    return Reporter(progress, cancelled)
