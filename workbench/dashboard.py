"""The live run dashboard: curves of a training run (or several, overlaid), a header with the latest
values, progress and a collapse warning, and a log pane.

Model/view: the dashboard observes a run's ``backend.ledger.RunLedger`` (the one the run manager's
``RunState`` owns, or one of its own for history and overlays). ``notify(update)`` only notes what
changed; a timer redraws at ``REFRESH_HZ`` with one ``setData`` per changed curve, and stops when
nothing changed. The ledger outlives the widget: a closed and reopened tab shows the same run.
"""

from __future__ import annotations

import html
import time
from collections import deque
from pathlib import Path

import pyqtgraph as pg
from PySide6.QtCore import QEvent, Qt, QTimer
from PySide6.QtWidgets import (QHBoxLayout, QLabel, QSizePolicy, QSplitter,
                               QTabWidget, QVBoxLayout, QWidget)

from backend.events import read_events
from backend.ledger import LedgerUpdate, Progress, RunLedger
from backend.runs import EVENTS_FILE

from . import plots, spectrum_panel
from .log_view import RunLogPane
from .dashboard_runs import DashRun, open_run
from .plot_export import PlotTools, named_curves

REFRESH_HZ = 10  # redraws per second: smooth enough for training curves, light on 2 cores
LOG_MAX_LINES = 2000
GRID_COLUMNS = 3
OTHER_HINT = "Method-specific metrics (e.g. moco/queue_fill) appear here."


class RunDashboard(QWidget):
    """Live and historical curves of training runs (``progress_info``: where the shown run stands)."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.theme = plots.theme_for(self)
        self.redraw_ms: deque = deque(maxlen=2000)  # duration of each redraw tick (for benchmarks)
        self._overlay = False
        self._runs: list[DashRun] = []
        self._plots: dict[str, pg.PlotItem] = {}
        self._other: dict[str, pg.PlotItem] = {}
        self._followers: dict[str, plots.XFollower] = {}  # by plot key or Other metric name
        self.tools: dict[str, PlotTools] = {}  # export / log scale of each plot, by key or name
        self._collapse = ""
        self._build()
        self._timer = QTimer(self)
        self._timer.setInterval(int(1000 / REFRESH_HZ))
        self._timer.timeout.connect(self._tick)
        self.clear()

    # ---- construction ----------------------------------------------------------------------
    def _build(self) -> None:
        self.title_label = QLabel()
        self.title_label.setTextFormat(Qt.TextFormat.PlainText)
        font = self.title_label.font()
        font.setBold(True)
        self.title_label.setFont(font)
        self.stats_label = QLabel()
        self.stats_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.collapse_label = QLabel()
        self.collapse_label.setStyleSheet(f"QLabel {{ background: {plots.WARNING_COLOR}; color: white; "
                                          "padding: 2px 8px; border-radius: 3px; font-weight: bold; }")
        self.collapse_label.hide()
        for label in (self.title_label, self.stats_label, self.collapse_label):
            # Long texts are clipped rather than forcing the dashboard (and its window) wider.
            label.setMinimumWidth(1)
        for label in (self.stats_label, self.collapse_label):
            label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        header = QVBoxLayout()
        header.setContentsMargins(6, 4, 6, 2)
        header.setSpacing(2)
        top = QHBoxLayout()
        top.addWidget(self.title_label)
        top.addSpacing(12)
        top.addWidget(self.stats_label, 1)
        header.addLayout(top)
        header.addWidget(self.collapse_label)

        self.grid = pg.GraphicsLayoutWidget()
        self.other_grid = pg.GraphicsLayoutWidget()
        for widget in (self.grid, self.other_grid):
            widget.ci.setContentsMargins(2, 2, 2, 2)
            widget.ci.setSpacing(4)
        for i, key in enumerate(plots.GRID_ORDER):
            row, col = divmod(i, GRID_COLUMNS)
            self._plots[key] = plots.make_plot(self.grid, row, col, "", "", "", self.theme)
            if key != "plane":
                self._followers[key] = plots.XFollower(self._plots[key])
            self._add_tools(key, self._plots[key])
        for i in range(GRID_COLUMNS):  # equal columns whatever the title lengths
            self.grid.ci.layout.setColumnStretchFactor(i, 1)
            self.grid.ci.layout.setColumnPreferredWidth(i, 300)
        # The plot titles name the curves; comparing runs, the header keys the runs' colours.
        self.legend = plots.add_legend(self._plots["loss"], self.theme)
        self._plots["knn"].setYRange(0.0, 1.0, padding=0.02)  # pinned: accuracies are 0..1
        self._plots["knn"].enableAutoRange(axis="y", enable=False)
        self.collapse_band = plots.CollapseBand(self._plots["std"], self.theme)
        self._other_hint = self.other_grid.addLabel(OTHER_HINT, color=self.theme.muted)

        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)
        self.tabs.addTab(self.grid, "Curves")
        self.tabs.addTab(self.other_grid, "Other")
        self.spectrum = spectrum_panel.SpectrumPanel(self.theme)
        self.tabs.addTab(self.spectrum.widget, "Spectrum")
        for key, plot in self.spectrum.plots.items():
            self._add_tools(key, plot)
        self.log_view = RunLogPane(LOG_MAX_LINES)
        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(self.tabs)
        splitter.addWidget(self.log_view)
        splitter.setStretchFactor(0, 5)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([600, 110])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addLayout(header)
        layout.addWidget(splitter, 1)
        self._apply_theme()

    def _apply_theme(self) -> None:
        for widget in (self.grid, self.other_grid):
            widget.setBackground(self.theme.background)
        for key, plot in self._plots.items():
            if key == "plane":
                plots.style_plot(plot, plots.PLANE_TITLE, plots.plane_xlabel(self.theme, self._overlay), "uniformity",
                                 self.theme)
            else:
                spec = plots.plot_spec(key)
                title = plots.plot_title(spec, self.theme, self._overlay)
                plots.style_plot(plot, title, spec.x, spec.ylabel, self.theme)
        for name, plot in self._other.items():
            plots.style_plot(plot, name, "step", "value", self.theme)
        self.spectrum.apply_theme(self.theme)

    def _add_tools(self, key: str, plot: pg.PlotItem) -> None:
        """Right-click export (PNG / SVG / CSV, with a legend of the named curves) and log scale."""
        axes = ("alignment", "uniformity") if key == "plane" else ("step", "value")
        self.tools[key] = PlotTools(plot, lambda: key, lambda: named_curves(plot), lambda: self.theme, *axes,
                                    parent=self)

    def changeEvent(self, event) -> None:  # noqa: N802 - Qt override
        """Follow a switch between light and dark palettes."""
        if event.type() == QEvent.Type.PaletteChange:
            theme = plots.theme_for(self)
            if theme != self.theme:
                self.theme = theme
                self._apply_theme()
        super().changeEvent(event)

    # ---- public API ------------------------------------------------------------------------
    def clear(self) -> None:
        """Forget every run and curve; show an empty dashboard."""
        self._reset(overlay=False)

    def _reset(self, overlay: bool) -> None:
        self._timer.stop()
        for plot in self._plots.values():  # curves, plane scatters (bands and lines stay)
            for item in list(plot.listDataItems()):
                plot.removeItem(item)
        self.legend.clear()
        self.legend.setVisible(False)
        for name, plot in self._other.items():
            self.other_grid.removeItem(plot)
            del self._followers[name], self.tools[name]
        self._other.clear()
        self.spectrum.clear()
        for follower in self._followers.values():
            follower.reset()
        if self._other_hint is None:
            self._other_hint = self.other_grid.addLabel(OTHER_HINT, color=self.theme.muted)
        self.tabs.setTabText(1, "Other")
        self._overlay = overlay
        run = DashRun(RunLedger())
        self._runs = [run]
        if not overlay:  # the live run's curves are made now, not in its first (busy) tick
            for name in sorted(plots.KNOWN_METRICS, key=plots.metric_order):
                run.bindings[name] = self._make_bindings(run, name)
        self._collapse = ""
        self.collapse_label.hide()
        self.collapse_band.set_dim(None)
        self.log_view.clear()
        self.title_label.setText("No run")
        self.stats_label.setText("")
        self._apply_theme()

    @property
    def progress_info(self) -> Progress:
        """Where the shown run stands (the ledger's epoch, step, totals and ETA)."""
        return self._runs[0].ledger.progress()

    def set_run(self, run_dir: Path | None, ledger: RunLedger | None = None) -> None:
        """Show ``run_dir`` (its id as title, its config for totals and projector size); clears.
        ``ledger``: the run's ledger to observe (what it holds already is drawn at once; pass its
        later updates to ``notify``); without one the dashboard keeps its own."""
        self.clear()
        if run_dir is None:
            return
        run = self._runs[0]
        if ledger is not None:
            run.ledger = ledger
        open_run(run, Path(run_dir), 0)
        self.title_label.setText(run.label)  # the run id names method and backbone already
        self.title_label.setToolTip(f"{run.title}\n{run.run_dir}")
        self.collapse_band.set_dim(run.configured_dim)
        run.dirty.update(name for name, s in run.ledger.series.items() if s.n)
        self.notify(LedgerUpdate(logs=list(run.ledger.logs), status=True))
        if run.ledger.n_events:
            self._draw_all()  # what the ledger holds already is drawn now, in one go

    def notify(self, update: LedgerUpdate) -> None:
        """The shown run's ledger changed (``update``, as ``RunLedger.apply`` returned it): the
        redraw follows on the next tick."""
        run = self._runs[0]
        run.dirty.update(update.metrics)
        if update.logs:
            run.pending_logs.extend(update.logs)
            if len(run.pending_logs) > LOG_MAX_LINES:
                del run.pending_logs[:-LOG_MAX_LINES]
        if update and not self._timer.isActive():
            self._timer.start()

    def add_events(self, events: list[dict]) -> None:
        """Feed trainer events to the shown run's ledger (standalone use: a dashboard that keeps
        its own ledger); the redraw follows on the next tick."""
        self.notify(self._runs[0].ledger.apply(events))

    def load_history(self, run_dir: Path) -> None:
        """Show a run from its directory alone (finished, crashed or still running)."""
        ledger = RunLedger()
        ledger.apply(read_events(Path(run_dir) / EVENTS_FILE))
        self.set_run(run_dir, ledger)

    def overlay_runs(self, run_dirs: list[Path]) -> None:
        """Compare runs: every plot overlays one curve per run, one colour per run."""
        run_dirs = [Path(p) for p in run_dirs]
        if len(run_dirs) <= 1:
            return self.load_history(run_dirs[0]) if run_dirs else self.clear()
        self._reset(overlay=True)
        self._runs = []
        for i, run_dir in enumerate(run_dirs):
            run = DashRun(RunLedger(), color=i)
            open_run(run, run_dir, i)
            run.dirty.update(run.ledger.apply(read_events(run_dir / EVENTS_FILE)).metrics)
            self._runs.append(run)
        self.title_label.setText(f"Comparing {len(run_dirs)} runs")
        self.stats_label.setText("  ".join(
            f"<span style='color:{plots.series_color(r.color)}'>\u25a0</span> {html.escape(r.label)}"
            for r in self._runs))
        self._apply_theme()
        self._draw_all()

    def collapse_message(self) -> str:
        """The current collapse warning ('' when the representation looks healthy)."""
        return self._collapse

    def curves(self, key: str) -> list[pg.PlotDataItem]:
        """The live curves of a plot (by ``PlotSpec.key``, or an Other metric's name)."""
        plot = self._plots.get(key, self._other.get(key))
        return list(plot.listDataItems()) if plot is not None else []

    def other_metrics(self) -> list[str]:
        """Names shown in the Other grid."""
        return list(self._other)

    # ---- internals -------------------------------------------------------------------------
    def _tick(self) -> None:
        """Redraw what changed: one setData per changed curve; stop the timer when idle."""
        start = time.perf_counter()
        changed, new_plot, spectra = False, False, False
        for run in self._runs:
            dirty, run.dirty = run.dirty, set()
            if dirty:
                changed = True
                for name in sorted(dirty, key=plots.metric_order):
                    if name in spectrum_panel.METRICS:  # the Spectrum tab draws these
                        spectra = True
                        continue
                    bindings = run.bindings.get(name)
                    if bindings is None:
                        if name not in self._other and name not in plots.KNOWN_METRICS:
                            if new_plot:  # building a plot is costly: one per tick, the rest next time
                                run.dirty.add(name)
                                continue
                            new_plot = True
                        bindings = run.bindings[name] = self._make_bindings(run, name)
                    series = run.ledger.series.get(name)
                    if series is None:
                        continue
                    for b in bindings:
                        b.update(series)
                if dirty.intersection(plots.PLANE_METRICS):
                    self._update_plane(run)
        if spectra:
            self.spectrum.update([(r.ledger, r.color, r.label) for r in self._runs])
        logs = []
        if not self._overlay:
            logs, self._runs[0].pending_logs = self._runs[0].pending_logs, []
        if logs:
            self.log_view.append_events(logs[-LOG_MAX_LINES:], self.theme.muted)
        if changed or logs:
            self._update_header()
            self.redraw_ms.append(1000 * (time.perf_counter() - start))
        pending = any(run.dirty for run in self._runs)
        if pending and not self._timer.isActive():
            self._timer.start()
        elif not (changed or logs or pending):
            self._timer.stop()

    def _draw_all(self) -> None:
        """Redraw everything now (loading a finished run: no need to spread the work)."""
        self._tick()
        while any(run.dirty for run in self._runs):
            self._tick()
        for follower in self._followers.values():
            follower.fit()

    def _make_bindings(self, run: DashRun, name: str) -> list[plots.CurveBinding]:
        bindings = []
        for spec in plots.PLOTS:
            multi = len([c for c in spec.curves if not self._overlay or c.overlay]) > 1
            for c in spec.curves:
                if c.metric != name or (self._overlay and not c.overlay):
                    continue
                color = plots.series_color(run.color if self._overlay else c.color)
                style = (c.style if multi else 0) if self._overlay else c.style
                sparse = spec.x == "epoch"  # a point per epoch: marked, and a wider pen is cheap
                item = plots.make_curve(self._plots[spec.key], color, None, style,
                                        width=1.5 if sparse else 1.0, symbol="o" if sparse else None)
                # Named after adding (no legend over the curves: the header keys the runs'
                # colours); exports key them below the plot and head their CSV columns.
                item.opts["name"] = (f"{run.label} {c.label}" if multi else run.label) if self._overlay else c.label
                bindings.append(plots.CurveBinding(item, spec.x, self._followers[spec.key]))
                self.legend.setVisible(bool(self.legend.items))
        if name not in plots.KNOWN_METRICS and name not in plots.PLANE_METRICS:
            plot = self._other.get(name)
            if plot is None:
                plot = self._add_other_plot(name)
            color = plots.series_color(run.color if self._overlay else len(self._other) - 1)
            item = plots.make_curve(plot, color)
            item.opts["name"] = run.label if self._overlay else name
            bindings.append(plots.CurveBinding(item, "step", self._followers[name]))
        return bindings

    def _add_other_plot(self, name: str) -> pg.PlotItem:
        if self._other_hint is not None:
            self.other_grid.removeItem(self._other_hint)
            self._other_hint = None
        row, col = divmod(len(self._other), GRID_COLUMNS)
        plot = plots.make_plot(self.other_grid, row, col, name, "step", "value", self.theme)
        self._other[name] = plot
        self._followers[name] = plots.XFollower(plot)
        self._add_tools(name, plot)
        self.tabs.setTabText(1, f"Other ({len(self._other)})")
        return plot

    def _update_plane(self, run: DashRun) -> None:
        points = plots.plane_points(run.ledger.get("alignment"), run.ledger.get("uniformity"))
        if points is None:
            return
        if run.plane is None:
            color = plots.series_color(run.color) if self._overlay else None
            run.plane = plots.PlaneView(self._plots["plane"], self.theme, color, run.label)
        run.plane.set_data(*points)

    def _update_header(self) -> None:
        reasons = []
        for run in self._runs:
            # A single run: the trainer's own warning, else its rule on the latest metrics (runs
            # whose trainer predates its collapse events); overlays: the rule.
            reason = run.ledger.collapse_message(run.configured_dim, run.probe_size, trainer=not self._overlay)
            if reason:
                reasons.append(f"{run.label}: {reason}" if self._overlay else reason)
        self._collapse = " | ".join(reasons)
        self.collapse_label.setText(f"\u26a0 Collapse? {self._collapse}" if self._collapse else "")
        self.collapse_label.setToolTip(self._collapse)
        self.collapse_label.setVisible(bool(self._collapse))
        if self._overlay:
            return
        run = self._runs[0]
        led = run.ledger
        if not run.configured_dim:
            self.collapse_band.set_dim(led.projector_dim())
        parts = led.headline()  # the run bar's own counters, ETA and formatter
        self.stats_label.setText("   \u00b7   ".join(parts))
