"""What the soak test measures of the GUI process, and how it judges and reports it.

A :class:`Sample` is taken after each cycle, once deferred deletes ran and garbage was collected:
RSS and peak RSS (psutil when installed, else ``/proc/self/status``), open file descriptors
(``/proc/self/fd``), threads (Python's and the kernel's ``/proc/self/task``), and live QTimer
objects (every QTimer under the application's top-level widgets, the main window's non-widget
children included)."""

from __future__ import annotations

import csv
import gc
import io
import os
import threading
import time
from dataclasses import asdict, dataclass, fields

from PySide6.QtCore import QCoreApplication, QEvent, QTimer
from PySide6.QtWidgets import QApplication

MB = 1024 * 1024


def _status_kb(key: str) -> int:
    """A ``kB`` field of /proc/self/status (0 where there is none)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def rss_bytes() -> tuple[int, int]:
    """(resident set size, peak resident set size) of this process, in bytes."""
    try:
        import psutil
    except ImportError:
        return _status_kb("VmRSS") * 1024, _status_kb("VmHWM") * 1024
    info = psutil.Process().memory_info()
    return info.rss, max(info.rss, _status_kb("VmHWM") * 1024)


def fd_count() -> int:
    """Open file descriptors of this process."""
    return len(os.listdir("/proc/self/fd"))


def os_thread_count() -> int:
    """Kernel threads of this process (Qt's and torch's included)."""
    return len(os.listdir("/proc/self/task"))


def timers() -> tuple[int, int]:
    """(QTimer objects, active ones) under every top-level widget of the application."""
    found = {id(t): t for w in QApplication.topLevelWidgets() for t in w.findChildren(QTimer)}
    return len(found), sum(t.isActive() for t in found.values())


def settle() -> None:
    """Run pending deferred deletes and events, then collect garbage, so a sample sees what stays."""
    for _ in range(3):
        QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
        QCoreApplication.processEvents()
    gc.collect()


@dataclass
class Sample:
    """One row of the soak's curve."""

    cycle: int
    elapsed_s: float
    rss_mb: float
    peak_rss_mb: float
    fds: int
    py_threads: int
    os_threads: int
    qtimers: int
    qtimers_active: int
    note: str = ""


def take_sample(cycle: int, started: float, note: str = "") -> Sample:
    """Settle the process, then measure it."""
    settle()
    rss, peak = rss_bytes()
    n_timers, n_active = timers()
    return Sample(cycle, round(time.monotonic() - started, 1), round(rss / MB, 1), round(peak / MB, 1), fd_count(),
                  threading.active_count(), os_thread_count(), n_timers, n_active, note)


@dataclass(frozen=True)
class Limits:
    """What the soak accepts, after the warm-up sample ``warm``: total RSS growth, growth over the
    second half of the cycles (a leak keeps growing; a warm-up levels off), no steady rise over the
    last ``trend_cycles`` cycles, and FDs / threads / timers back within a small constant."""

    rss_growth_mb: float = 300.0
    second_half_growth_mb: float = 100.0
    trend_cycles: int = 8
    trend_min_mb: float = 20.0
    fds: int = 8
    os_threads: int = 6
    py_threads: int = 2
    qtimers: int = 2


def violations(samples: list[Sample], warm: int, limits: Limits = Limits()) -> list[str]:
    """Why the curve ``samples`` (``warm`` = index of the post-warm-up sample) is not healthy ([] = it is)."""
    base, last = samples[warm], samples[-1]
    after = samples[warm:]
    problems = []
    if last.rss_mb - base.rss_mb >= limits.rss_growth_mb:
        problems.append(f"RSS grew {last.rss_mb - base.rss_mb:.0f} MB after warm-up "
                        f"(limit {limits.rss_growth_mb:.0f} MB)")
    mid = after[len(after) // 2]
    if last.rss_mb - mid.rss_mb >= limits.second_half_growth_mb:
        problems.append(f"RSS grew {last.rss_mb - mid.rss_mb:.0f} MB over the second half "
                        f"(limit {limits.second_half_growth_mb:.0f} MB)")
    tail = [s.rss_mb for s in after[-limits.trend_cycles:]]
    if (len(tail) == limits.trend_cycles and all(b > a for a, b in zip(tail, tail[1:]))
            and tail[-1] - tail[0] >= limits.trend_min_mb):
        problems.append(f"RSS rose every cycle over the last {limits.trend_cycles} ({tail[0]:.0f} -> {tail[-1]:.0f} MB)")
    for name in ("fds", "os_threads", "py_threads", "qtimers"):
        grown = getattr(last, name) - getattr(base, name)
        if grown > getattr(limits, name):
            problems.append(f"{name} grew by {grown} ({getattr(base, name)} -> {getattr(last, name)}; "
                            f"limit +{getattr(limits, name)})")
    return problems


def report_text(samples: list[Sample], warm: int, start_peak_mb: float, summary: list[str]) -> str:
    """The soak report: '# ' summary lines (peak RSS at start and after, the verdict), then the
    curve as CSV (``pandas.read_csv(path, comment='#')`` reads it)."""
    out = io.StringIO()
    last = samples[-1]
    head = [f"SSL Workbench GUI soak: {last.cycle} cycles in {last.elapsed_s / 60:.1f} min",
            f"peak RSS at start: {start_peak_mb:.0f} MB; peak RSS after the soak: {last.peak_rss_mb:.0f} MB",
            f"RSS at start {samples[0].rss_mb:.0f} MB, after warm-up (cycle {samples[warm].cycle}) "
            f"{samples[warm].rss_mb:.0f} MB, at the end {last.rss_mb:.0f} MB",
            f"fds {samples[warm].fds} -> {last.fds}, threads {samples[warm].os_threads} -> {last.os_threads}, "
            f"qtimers {samples[warm].qtimers} -> {last.qtimers}", *summary]
    out.writelines(f"# {line}\n" for line in head)
    writer = csv.DictWriter(out, [f.name for f in fields(Sample)], lineterminator="\n")
    writer.writeheader()
    writer.writerows(asdict(s) for s in samples)
    return out.getvalue()
