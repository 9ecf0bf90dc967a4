"""The run ledger: one incremental fold of a run's event stream (docs/ARCHITECTURE.md: event contract).

Every reader of a run's events (the runs table, the run tab and its dashboard, ``sslwb train``'s
progress line, ``summarize_run``) feeds them to a ``RunLedger`` instead of folding them itself, so
the rules live once: the lifecycle state and message (an unexpected error is a crash), totals and
the epoch counter, one ETA (from the step rate over running time, paused time excluded), numpy
series per metric with the resume cut (a ``resumed`` status with step k drops the points after k
of the killed segment), the collapse status and a bounded list of log lines.

``RunLedger.apply(events)`` costs O(len(events)) (plus a copy of the series a resume cuts) and
returns a ``LedgerUpdate`` naming what changed. Plain Python and numpy; no Qt, no torch.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import NamedTuple

from .collapse import collapse_reasons
from .events import TERMINAL_STATES
from .series import COLUMNS, Series
from .spectrum_log import SpectrumSeries, is_spectrum_event, scalar_names

__all__ = ["ACTIVE", "ENDED", "RESUMABLE", "LedgerUpdate", "Progress", "RunLedger", "Series", "error_state",
           "fold", "format_duration", "shown_epoch"]

# States where a run can be resumed from its checkpoint.
RESUMABLE = ("stopped", "crashed", "killed", "interrupted", "error")
# States where the trainer process is gone.
ENDED = ("finished", "stopped", "error", "crashed", "killed", "interrupted", "invalid")
# States of a live trainer ("stalled": alive but silent for longer than the stall timeout).
ACTIVE = ("starting", "loading data", "running", "paused", "stopping", "stalled")
# Last states a run's files can show (everything else, once the trainer is gone, is "interrupted").
SETTLED = TERMINAL_STATES + ("crashed", "killed", "invalid")
# How trainer status states read in the GUI.
STATE_NAMES = {"started": "running", "resumed": "running", "loading_data": "loading data"}
EXIT_MEANINGS = {2: "config error", 3: "data error", 1: "training error"}
MAX_LOG_EVENTS = 2000  # log / status / error events kept (a log pane shows about this many lines)


def format_duration(seconds: float | None) -> str:
    """'1:02:03', '4:05' or '' for unknown (None, NaN or negative)."""
    if seconds is None or seconds != seconds or seconds < 0 or math.isinf(seconds):
        return ""
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def error_state(event: dict) -> str:
    """The state an error event puts a run in: an ``unexpected`` one (a bug in the trainer, not a
    problem with the settings or the data) is a crash, any other an error."""
    return "crashed" if event.get("unexpected") else "error"


def shown_epoch(state: str, epoch: int, epochs: int, started: bool = True) -> int:
    """The 1-based epoch a run is in (all of them once finished, capped at the total when known;
    0 for a run that has not ``started`` a step)."""
    if state == "finished" and epochs:
        return epochs
    if not started:
        return 0
    return min(epoch + 1, epochs) if epochs else epoch + 1


@dataclass
class LedgerUpdate:
    """What one ``RunLedger.apply`` (or direct change) changed: ``metrics`` names the series that
    grew or were cut, ``logs`` holds the new log / status / error events in order, ``status`` is
    True when the state, message, totals or counters moved."""

    metrics: set = field(default_factory=set)
    logs: list = field(default_factory=list)
    status: bool = False

    def __bool__(self) -> bool:
        return bool(self.metrics or self.logs or self.status)


class Progress(NamedTuple):
    """Where a run stands: 1-based epoch in progress, step, totals (0 = unknown), ETA (None = unknown)."""

    epoch: int
    step: int
    total_epochs: int
    eta_seconds: float | None
    total_steps: int = 0

    def parts(self) -> list[str]:
        """'epoch 3/15', 'step 120/600', 'ETA 0:42': the known ones, in that order."""
        parts = []
        if self.total_epochs:
            parts.append(f"epoch {max(self.epoch, 0)}/{self.total_epochs}")
        if self.total_steps:
            parts.append(f"step {self.step:,}/{self.total_steps:,}")
        elif self.step:
            parts.append(f"step {self.step:,}")
        eta = format_duration(self.eta_seconds)
        if eta and self.eta_seconds:
            parts.append(f"ETA {eta}")
        return parts


class RunLedger:
    """Everything the event stream says about one run, folded incrementally.

    ``keep_series=False`` skips the per-metric buffers (a summary needs only the counters).
    Attributes: ``state`` / ``message``, ``step`` / ``epoch`` (of the latest metric, 0-based epoch),
    ``epochs`` / ``total_steps`` / ``steps_per_epoch`` (0 = unknown), ``has_checkpoint``,
    ``exit_code``, ``latest`` (last value per metric), ``best_knn``, ``series`` (name -> Series),
    ``logs`` (the last ``MAX_LOG_EVENTS`` log/status/error events), ``trainer_collapse`` (the
    trainer's active collapse warning), ``last_error`` / ``last_status`` (of the current trainer
    process, see ``begin_segment``), ``n_events``, ``last_time``.
    """

    def __init__(self, *, keep_series: bool = True, max_logs: int = MAX_LOG_EVENTS):
        self.keep_series = keep_series
        self.state, self.message = "created", ""
        self.step = self.epoch = self.epochs = self.total_steps = self.steps_per_epoch = 0
        self.has_checkpoint = False
        self.exit_code: int | None = None
        self.latest: dict[str, float] = {}
        self.best_knn: float | None = None
        self.series: dict[str, Series] = {}
        self.spectra: dict[str, SpectrumSeries] = {}  # spectrum event name -> readings
        self.logs: deque = deque(maxlen=max_logs)
        self.trainer_collapse = ""
        self.n_events, self.last_time = 0, 0.0
        self.begin_segment()

    # ---- feeding ---------------------------------------------------------------------------
    def begin_segment(self) -> None:
        """A new trainer process starts: forget the previous one's error, last status and step rate."""
        self.last_error: dict | None = None
        self.last_status = ""
        self._reset_rate()

    def _reset_rate(self) -> None:
        self._run_time = 0.0      # running seconds of closed stretches (before a pause)
        self._run_steps = 0       # steps done in them
        self._anchor: tuple[float, int] | None = None  # (time, step) the open stretch began at
        self._paused = False
        self._metric_time = 0.0   # time of the latest metric

    def apply(self, events) -> LedgerUpdate:
        """Fold events in order; returns what changed."""
        update = LedgerUpdate()
        for event in events:
            kind = event.get("kind")
            self.n_events += 1
            t = event.get("time")
            if isinstance(t, (int, float)):
                self.last_time = float(t)
            if kind == "metric":
                self._metric(event, update)
                continue
            for key in ("total_steps", "steps_per_epoch", "epochs"):
                if isinstance(event.get(key), int) and event[key] != getattr(self, key):
                    setattr(self, key, event[key])
            if kind == "status":
                self._status(event, update)
            elif kind == "error":
                self.last_error = event
                self.state, self.message = error_state(event), event.get("message", "")
                self.exit_code = event.get("exit_code", self.exit_code)
            elif kind == "log":
                if event.get("warning") == "collapse":
                    self.trainer_collapse = event.get("message", "")
                elif event.get("warning") == "collapse_cleared":
                    self.trainer_collapse = ""
            if kind in ("status", "log", "error"):
                update.status = update.status or kind != "log"
                self.logs.append(event)
                update.logs.append(event)
        if len(update.logs) > self.logs.maxlen:
            del update.logs[:-self.logs.maxlen]
        return update

    def _metric(self, event: dict, update: LedgerUpdate) -> None:
        step, epoch = event.get("step"), event.get("epoch")
        t = float(event.get("time", self.last_time))
        if isinstance(step, int):
            self.step = step
            if self._anchor is None and not self._paused:
                self._anchor = (t, step)
            self._metric_time = t
        if isinstance(epoch, int):
            self.epoch = epoch
        update.status = True
        value, name = event.get("value"), event.get("name")
        if name is not None and is_spectrum_event(event):
            self._spectrum(name, event, update)
        if name is not None and isinstance(value, (int, float)):
            self._scalar(name, value, event, update)

    def _scalar(self, name: str, value: float, event: dict, update: LedgerUpdate) -> None:
        value = float(value) if math.isfinite(value) else math.nan
        self.latest[name] = value
        if name == "knn_top1" and value == value and (self.best_knn is None or value > self.best_knn):
            self.best_knn = value
        if self.keep_series:
            s = self.series.get(name)
            if s is None:
                s = self.series[name] = Series()
            s.append(int(event.get("step") or 0), int(event.get("epoch") or 0), value, float(event.get("time", self.last_time)))
            update.metrics.add(name)

    def _spectrum(self, name: str, event: dict, update: LedgerUpdate) -> None:
        """A spectrum reading: its eigenvalues to ``spectra``, alpha / RankMe to scalar series."""
        for scalar, key in zip(scalar_names(name), ("alpha", "rankme")):
            if isinstance(event.get(key), (int, float)):
                self._scalar(scalar, event[key], event, update)
        if self.keep_series:
            self.spectra.setdefault(name, SpectrumSeries()).append(int(event.get("step") or 0), event["values"])
            update.metrics.add(name)

    def _status(self, event: dict, update: LedgerUpdate) -> None:
        raw = event.get("state", "")
        self.last_status = raw or self.last_status
        if isinstance(event.get("step"), int):
            self.step = event["step"]
        t = float(event.get("time", self.last_time))
        if raw == "checkpoint":  # an aside, not a lifecycle change
            self.has_checkpoint = True
            self.message = event.get("message", "")
            return
        if raw in ("started", "resumed"):
            self._reset_rate()
        elif raw == "paused" and not self._paused:
            if self._anchor is not None:  # close the running stretch: paused time does not count
                self._run_time += t - self._anchor[0]
                self._run_steps += self.step - self._anchor[1]
            self._anchor, self._paused = None, True
        elif raw == "running" and self._paused:
            self._anchor, self._paused = (t, self.step), False
        if raw == "resumed" and isinstance(event.get("step"), int):
            cut = event["step"]
            for name, spectra in self.spectra.items():
                if spectra.truncate_after(cut):
                    update.metrics.add(name)
            for name, s in self.series.items():
                if s.truncate_after(cut):
                    update.metrics.add(name)
                    if s.n:
                        self.latest[name] = s.last()
                    else:
                        self.latest.pop(name, None)
        self.state = STATE_NAMES.get(raw, raw) or self.state
        self.message = event.get("message", "")

    def set_state(self, state: str, message: str | None = None) -> LedgerUpdate:
        """Set the state directly (what the process controller learns: starting, stalled, killed...)."""
        self.state = state
        if message is not None:
            self.message = message
        return LedgerUpdate(status=True)

    def settled_state(self) -> str:
        """The state once the trainer is gone and its files hold no more: a run without a
        terminal state was interrupted (killed, or running in a process this reader does not know)."""
        if self.n_events and self.state not in SETTLED and self.state != "created":
            return "interrupted"
        return self.state

    def settle(self) -> None:
        """Take ``settled_state()`` as the state (a run read from its files alone)."""
        self.state = self.settled_state()

    # ---- the process outcome ---------------------------------------------------------------
    def outcome(self, exit_code: int, crashed: bool, kill_reason: str = "", tail: str = "") -> tuple[str, str]:
        """(state, message) for a trainer process that ended with ``exit_code`` or by a signal
        (``crashed``), from what its events said: killed on request, an error event (a crash when
        ``unexpected``), a signal, a clean exit after finishing/stopping, or a silent failure.
        ``tail``: the last lines of its output, quoted when it crashed."""
        last = f"; last output: {tail}" if tail else ""
        if kill_reason and crashed:
            return "killed", f"{kill_reason} at step {self.step}; resume continues from the last checkpoint"
        if self.last_error is not None and not crashed:
            meaning = EXIT_MEANINGS.get(exit_code, f"exit code {exit_code}")
            message = f"{meaning}: {self.last_error.get('message', '')}"
            if error_state(self.last_error) == "crashed":
                return "crashed", message + last
            return "error", message
        if crashed:
            return "crashed", "the trainer process was killed or crashed (no clean exit)" + last
        if exit_code == 0:
            if self.last_status in ("finished", "stopped"):
                return self.last_status, self.message
            return "stopped", "the trainer exited before finishing; resume to continue"
        return "crashed", f"the trainer exited with code {exit_code} without an error report{last}"

    # ---- reading ---------------------------------------------------------------------------
    def eta_seconds(self) -> float | None:
        """Seconds left at the step rate over this process's running time (paused time excluded);
        0 once finished, None when unknown or not running."""
        if self.state == "finished":
            return 0.0
        if self.state != "running" or not self.total_steps:
            return None
        steps, secs = self._run_steps, self._run_time
        if self._anchor is not None:
            steps += self.step - self._anchor[1]
            secs += self._metric_time - self._anchor[0]
        if steps <= 0 or secs <= 0:
            return None
        return max(0.0, (self.total_steps - self.step) * secs / steps)

    def steps_per_second(self) -> float | None:
        """The step rate the ETA uses (None until it is known)."""
        eta = self.eta_seconds()
        if not eta:
            return None
        return (self.total_steps - self.step) / eta

    def shown_epoch(self) -> int:
        """The 1-based epoch in progress (see ``shown_epoch``)."""
        return shown_epoch(self.state, self.epoch, self.epochs)

    def progress(self) -> Progress:
        """Epoch (1-based), step, totals and ETA in one value (what the run bar and header show)."""
        return Progress(self.shown_epoch(), self.step, self.epochs, self.eta_seconds(), self.total_steps)

    def fraction(self) -> float | None:
        """Fraction done in [0, 1], or None when unknown."""
        if self.state == "finished":
            return 1.0
        if self.total_steps:
            return min(1.0, self.step / self.total_steps)
        if self.epochs:
            return min(1.0, self.epoch / self.epochs)
        return None

    def progress_text(self, live: bool = False) -> str:
        """'epoch 3/15 · step 120/600 · ETA 0:42' (parts that are known), or why there is none."""
        if not self.step and not live and self.state in ("error", "crashed", "invalid"):
            return "failed before the first step"
        return " · ".join(self.progress().parts()) or self.state

    def headline(self) -> list[str]:
        """The run tab's header line: latest loss, kNN and throughput, then the progress parts
        (once a step is known) and the state."""
        parts = []
        for name, fmt in (("loss", "loss {:.4f}"), ("knn_top1", "kNN {:.1%}"), ("throughput", "{:,.0f} img/s")):
            value = self.latest.get(name)
            if value is not None and math.isfinite(value):
                parts.append(fmt.format(value))
        if self.step:
            parts += self.progress().parts()
        if self.state != "created":
            parts.append(self.state)
        return parts

    def get(self, name: str) -> Series | None:
        """The series of a metric, or None."""
        return self.series.get(name)

    def last(self, name: str) -> float | None:
        """The latest value of a metric, or None."""
        return self.latest.get(name)

    def columns(self) -> dict[str, dict[str, list]]:
        """Plain columns in the shape of ``backend.events.metric_series``."""
        return {name: {k: getattr(s, k)[:s.n].tolist() for k in COLUMNS} for name, s in self.series.items() if s.n}

    def projector_dim(self, configured: int | None = None) -> float | None:
        """The projector output width D: from the config when known, else estimated from the first
        embedding_std points (healthy std is about 1/sqrt(D), so D ~ 1/std^2; rough, it only sets
        the warning level, and the effective-rank test still catches a run collapsed from step 1)."""
        if configured:
            return float(configured)
        s = self.series.get("embedding_std")
        first = sorted(v for v in (s.values[:3].tolist() if s else []) if math.isfinite(v) and v > 0)
        return 1.0 / first[len(first) // 2] ** 2 if first else None  # the median of up to three

    def collapse_reason(self, dim: float | None, probe_size: int | None = None) -> str:
        """A one-line warning when the latest projector metrics look collapsed by the trainer's
        own rule (``backend.collapse``), else ''. Without ``dim`` only the rank is judged."""
        std, rank = self.last("embedding_std"), self.last("effective_rank")
        d = int(round(dim)) if dim else None
        unknown = 10 ** 9  # no limit from an unknown width or probe size
        return "; ".join(collapse_reasons(std if std is not None and d else math.nan,
                                          rank if rank is not None else math.nan,
                                          d or unknown, probe_size or d or unknown))

    def collapse_message(self, dim: float | None = None, probe_size: int | None = None, trainer: bool = True) -> str:
        """The trainer's active collapse warning (it judges std and effective rank, and also catches
        a low-rank projection whose std looks healthy; skipped when not ``trainer``), else the rule
        applied to the latest metrics with D = ``projector_dim(dim)``."""
        return (trainer and self.trainer_collapse) or self.collapse_reason(self.projector_dim(dim), probe_size)


def fold(events, **kwargs) -> RunLedger:
    """A ledger holding ``events`` (``kwargs`` as for ``RunLedger``)."""
    ledger = RunLedger(**kwargs)
    ledger.apply(events)
    return ledger
