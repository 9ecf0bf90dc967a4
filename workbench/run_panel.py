"""One run's tab: state badge and message, progress bar with ETA, run controls, and the live
dashboard (``workbench.dashboard.RunDashboard``), which observes the run's ledger: the ledger
lives with the run manager's ``RunState``, so closing the tab loses no series.

While another process (a terminal, a second window) writes the run, the bar says "in use by
<holder>" and Resume is disabled until it lets the run go (``RunState.holder``, polled by the run
manager). Fault handling lives in the bar too: Stop pressed again while the trainer is still stopping kills
it ("Force stop"), a ``stalled`` run offers Kill, and a run that asked for CUDA on a machine without
it offers "Run on CPU instead"."""

from __future__ import annotations

import html
from pathlib import Path

from PySide6.QtCore import Qt, QTimer, QUrl, Signal
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (QHBoxLayout, QLabel, QProgressBar, QPushButton, QSizePolicy, QVBoxLayout,
                               QWidget)

from backend.devices import cpu_fallback_offered

from .dashboard import RunDashboard
from .run_state import ACTIVE, RunState, run_label
from .runs_model import STATE_COLOURS

BADGE_COLOURS = {**STATE_COLOURS, "stalled": "#ef6c00", "killed": "#c62828", "in use": "#6a1b9a"}
STOP_TIP = "Checkpoint and stop after the current step (resume later)"
FORCE_STOP_TIP = ("The trainer is finishing its step: press again to kill it now (progress since the last "
                  "checkpoint is lost)")


def in_use_text(holder: str) -> str:
    """The bar's line for a run another process writes."""
    return f"in use by {holder}: Resume and Delete are disabled until it lets the run go"


class RunPanel(QWidget):
    """The tab of one run. Emits ``commandRequested(run_dir, command)`` for stop / pause / resume /
    checkpoint / kill, ``resumeRequested(run_dir)`` to restart a dead run from its checkpoint and
    ``cpuFallbackRequested(run_dir)`` to run it again on the CPU."""

    commandRequested = Signal(object, str)
    resumeRequested = Signal(object)
    cpuFallbackRequested = Signal(object)

    def __init__(self, state: RunState, parent=None):
        super().__init__(parent)
        self.state = state
        self.run_dir = state.run_dir
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)

        bar = QWidget()
        bar.setObjectName("runBar")
        row = QHBoxLayout(bar)
        row.setContentsMargins(8, 6, 8, 6)
        self.badge = QLabel()
        self.badge.setObjectName("stateBadge")
        self.badge.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.badge.setMinimumWidth(84)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setTextVisible(True)
        self.progress.setMinimumWidth(240)
        self.progress.setMaximumWidth(420)
        self.stop_button = QPushButton("Stop")
        self.stop_button.setToolTip(STOP_TIP)
        self.kill_button = QPushButton("Kill")
        self.kill_button.setToolTip("The trainer has gone silent: end its process now (resume from the last "
                                    "checkpoint)")
        self.cpu_button = QPushButton("Run on CPU instead")
        self.cpu_button.setToolTip("Set runtime.device to cpu and start this run again")
        self.pause_button = QPushButton("Pause")
        self.resume_button = QPushButton("Resume")
        self.resume_button.setToolTip("Continue a paused run, or restart a stopped/crashed run from its checkpoint")
        self.checkpoint_button = QPushButton("Checkpoint")
        self.checkpoint_button.setToolTip("Save checkpoints/last.pt now")
        self.folder_button = QPushButton("Folder")
        self.folder_button.setToolTip(str(self.run_dir))
        row.addWidget(self.badge)
        row.addWidget(self.progress, 1)
        for b in (self.stop_button, self.kill_button, self.cpu_button, self.pause_button, self.resume_button,
                  self.checkpoint_button, self.folder_button):
            row.addWidget(b)
        layout.addWidget(bar)
        self.message = QLabel()
        self.message.setObjectName("runMessage")
        self.message.setWordWrap(True)
        self.message.setContentsMargins(10, 0, 10, 4)
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.message.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        layout.addWidget(self.message)
        self.dashboard = RunDashboard()
        self.dashboard.set_run(self.run_dir, state.ledger)
        layout.addWidget(self.dashboard, 1)

        self.stop_button.clicked.connect(lambda: self.commandRequested.emit(self.run_dir, "stop"))
        self.kill_button.clicked.connect(lambda: self.commandRequested.emit(self.run_dir, "kill"))
        self.cpu_button.clicked.connect(lambda: self.cpuFallbackRequested.emit(self.run_dir))
        self.pause_button.clicked.connect(lambda: self.commandRequested.emit(self.run_dir, "pause"))
        self.checkpoint_button.clicked.connect(lambda: self.commandRequested.emit(self.run_dir, "checkpoint"))
        self.resume_button.clicked.connect(self._resume_clicked)
        self.folder_button.clicked.connect(lambda: QDesktopServices.openUrl(QUrl.fromLocalFile(str(self.run_dir))))
        state.changed.connect(self.refresh)
        state.updated.connect(self.dashboard.notify)
        state.reloaded.connect(self._ledger_replaced)  # a method: the state outlives the tab
        self._look = None  # (state, message, live, resumable, detached, holder) the bar was last styled for
        self._eta_timer = QTimer(self)  # the ETA counts down between events
        self._eta_timer.setInterval(1000)
        self._eta_timer.timeout.connect(self.refresh)
        self._eta_timer.start()
        self.refresh()

    def _ledger_replaced(self) -> None:
        self.dashboard.set_run(self.run_dir, self.state.ledger)

    def _resume_clicked(self) -> None:
        if self.state.live:
            self.commandRequested.emit(self.run_dir, "resume")
        elif self.state.resumable:
            self.resumeRequested.emit(self.run_dir)

    def refresh(self) -> None:
        """Redraw the bar from the run state."""
        s = self.state
        frac = s.progress()
        if frac is None and s.live:
            self.progress.setRange(0, 0)  # busy indicator
        else:
            self.progress.setRange(0, 1000)
            self.progress.setValue(int(1000 * (frac or 0.0)))
        self.progress.setFormat(s.progress_text())
        look = (s.state, s.message, s.live, s.resumable, s.detached, s.holder)
        if look != self._look:  # restyling is costly and most refreshes only move the progress bar
            self._look = look
            self._restyle()
        live = s.live
        if not live and s.state not in ACTIVE:
            self._eta_timer.stop()
        elif not self._eta_timer.isActive():
            self._eta_timer.start()

    def _restyle(self) -> None:
        """Badge, message and buttons for the current state."""
        s = self.state
        shown = "in use" if s.in_use else s.state
        colour = BADGE_COLOURS.get(shown, "#616161")
        self.badge.setText(shown)
        self.badge.setStyleSheet(f"QLabel#stateBadge {{ background: {colour}; color: white; border-radius: 4px;"
                                 " padding: 3px 8px; font-weight: bold; }")
        bad = s.state in ("error", "crashed", "killed", "invalid", "interrupted", "stalled") and not s.in_use
        text = html.escape(in_use_text(s.holder) if s.in_use else s.message or "")
        self.message.setText(f"<span style='color:{'#c62828' if bad else '#616161'}'>"
                             f"{'<b>' + s.state + ':</b> ' if bad else ''}{text}</span>")
        self.message.setVisible(bool(text))
        live = s.live
        stopping = live and s.state == "stopping"
        self.stop_button.setEnabled(live)
        self.stop_button.setText("Force stop" if stopping else "Stop")
        self.stop_button.setToolTip(FORCE_STOP_TIP if stopping else STOP_TIP)
        self.kill_button.setVisible(live and s.state == "stalled")
        self.cpu_button.setVisible(not live and s.state == "error" and cpu_fallback_offered(s.message))
        steer = live and not s.detached  # a trainer from an earlier session only takes Stop (SIGTERM)
        self.pause_button.setEnabled(steer and s.state in ("running",))
        self.checkpoint_button.setEnabled(steer and s.state in ("running", "paused"))
        self.resume_button.setEnabled((live and s.state == "paused") or s.resumable)

    def title(self) -> str:
        """Tab title: the user's name for the run, then its id."""
        return run_label(self.state.name, self.state.run_id)


class ComparePanel(QWidget):
    """A tab overlaying the curves of several runs."""

    def __init__(self, run_dirs, parent=None):
        super().__init__(parent)
        self.run_dirs = [Path(p) for p in run_dirs]
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.dashboard = RunDashboard()
        layout.addWidget(self.dashboard)
        self.dashboard.overlay_runs(self.run_dirs)

    def title(self) -> str:
        """Tab title."""
        return f"Compare {len(self.run_dirs)} runs"
