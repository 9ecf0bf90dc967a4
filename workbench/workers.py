"""Background work off the GUI thread: ``submit(fn, ...)`` runs ``fn(ctx, *args)`` in a thread pool.

``fn`` reports progress with ``ctx.progress(fraction, text)`` and polls ``ctx.cancelled`` (or calls
``ctx.check()``, which raises ``Cancelled``). Callbacks (result, error, progress) always run on the
GUI thread. With ``synchronous=True`` (or ``set_synchronous(True)``: tests, screenshots) the same
call runs inline and calls its callbacks before returning, so every async path is testable.
"""

from __future__ import annotations

import threading
import time
import traceback
from typing import Callable

from PySide6.QtCore import QCoreApplication, QObject, QRunnable, QThreadPool, Signal, Slot

from backend.errors import Cancelled, WorkbenchError

_synchronous = False
_live: set = set()  # tasks kept alive until their result has been delivered
_pool: QThreadPool | None = None


def set_synchronous(flag: bool) -> None:
    """Run every later ``submit`` inline (True) or in the thread pool (False)."""
    global _synchronous
    _synchronous = bool(flag)


def is_synchronous() -> bool:
    """Whether ``submit`` currently runs inline."""
    return _synchronous


def thread_pool() -> QThreadPool:
    """The pool workers run in (two threads: the machine may have only two cores)."""
    global _pool
    if _pool is None:
        _pool = QThreadPool()
        _pool.setMaxThreadCount(2)
    return _pool


def describe_error(exc: BaseException) -> str:
    """One sentence for the user: our own errors as they are, others with their type."""
    if isinstance(exc, WorkbenchError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


class TaskContext:
    """What a task function gets: progress reporting and the cancel flag."""

    def __init__(self, report: Callable[[float, str], None]):
        self._cancel = threading.Event()
        self._report = report

    @property
    def cancelled(self) -> bool:
        """True once ``cancel()`` was called on the task."""
        return self._cancel.is_set()

    def check(self) -> None:
        """Raise ``Cancelled`` if the task was cancelled."""
        if self._cancel.is_set():
            raise Cancelled()

    def progress(self, fraction: float = -1.0, text: str = "") -> None:
        """Report progress: ``fraction`` in [0, 1] (negative: unknown) and a short text."""
        self._report(float(fraction), str(text))


class _Relay(QObject):
    progress = Signal(float, str)
    done = Signal(object, object, str)  # result, exception, traceback text


class _Runnable(QRunnable):
    def __init__(self, fn, args, kwargs, ctx, relay):
        super().__init__()
        self.setAutoDelete(True)
        self._fn, self._args, self._kwargs, self._ctx, self._relay = fn, args, kwargs, ctx, relay

    def run(self):
        result, exc, tb = None, None, ""
        try:
            result = self._fn(self._ctx, *self._args, **self._kwargs)
        except BaseException as e:  # delivered to the GUI thread, never raised in the pool
            exc, tb = e, traceback.format_exc()
        try:
            self._relay.done.emit(result, exc, tb)
        except RuntimeError:  # the owner (and so the relay) is gone: nobody wants the result
            pass


class Task(QObject):
    """Handle of one submitted job. Signals are delivered on the GUI thread."""

    progressed = Signal(float, str)
    succeeded = Signal(object)
    failed = Signal(str)
    finished = Signal()

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.done = False
        self.result = None
        self.error: str | None = None
        self.traceback = ""
        self.ctx = TaskContext(self._report)
        self._relay = _Relay(self)
        self._relay.progress.connect(self._on_progress)
        self._relay.done.connect(self._on_done)
        self._sync = False

    def cancel(self) -> None:
        """Ask the job to stop; its result (if any) is dropped."""
        self.ctx._cancel.set()

    def wait(self, timeout: float = 30.0) -> bool:
        """Process events until the job has delivered its result (for tests and shutdown)."""
        end = time.monotonic() + timeout
        while not self.done and time.monotonic() < end:
            QCoreApplication.processEvents()
            time.sleep(0.005)
        return self.done

    def _report(self, fraction: float, text: str) -> None:
        if self._sync:
            self._on_progress(fraction, text)
        else:
            try:
                self._relay.progress.emit(fraction, text)
            except RuntimeError:
                pass

    @Slot(float, str)
    def _on_progress(self, fraction, text):
        if not self.ctx.cancelled:
            self.progressed.emit(fraction, text)

    @Slot(object, object, str)
    def _on_done(self, result, exc, tb):
        self.done = True
        _live.discard(self)
        if isinstance(exc, Cancelled) or self.ctx.cancelled:
            self.finished.emit()
            return
        if exc is not None:
            self.error, self.traceback = describe_error(exc), tb
            self.failed.emit(self.error)
        else:
            self.result = result
            self.succeeded.emit(result)
        self.finished.emit()


def submit(fn: Callable, *args, on_result=None, on_error=None, on_progress=None, on_finished=None,
           owner: QObject | None = None, synchronous: bool | None = None, **kwargs) -> Task:
    """Run ``fn(ctx, *args, **kwargs)`` off the GUI thread and return its ``Task``.

    ``owner``: a QObject whose destruction drops the pending callbacks (e.g. a closed widget).
    Errors arrive at ``on_error`` as one sentence (the traceback stays on ``task.traceback``).
    """
    task = Task(owner)
    if on_progress is not None:
        task.progressed.connect(on_progress)
    if on_result is not None:
        task.succeeded.connect(on_result)
    if on_error is not None:
        task.failed.connect(on_error)
    if on_finished is not None:
        task.finished.connect(on_finished)
    sync = _synchronous if synchronous is None else synchronous
    if sync:
        task._sync = True
        try:
            result, exc, tb = fn(task.ctx, *args, **kwargs), None, ""
        except BaseException as e:
            result, exc, tb = None, e, traceback.format_exc()
        task._on_done(result, exc, tb)
        return task
    _live.add(task)
    # If the owner goes away first, the task goes with it and will never report: forget it.
    task.destroyed.connect(lambda *_args, t=task: _live.discard(t))
    thread_pool().start(_Runnable(fn, args, kwargs, task.ctx, task._relay))
    return task


def wait_all(timeout: float = 30.0) -> bool:
    """Process events until every pending task delivered its result (tests, shutdown)."""
    end = time.monotonic() + timeout
    while _live and time.monotonic() < end:
        QCoreApplication.processEvents()
        time.sleep(0.005)
    return not _live
