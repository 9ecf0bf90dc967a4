"""The Sweeps tab: pick a sweep of the workspace; a table with one row per run (its point, state,
final kNN top-1 and linear probe) and a heatmap of a one- or two-field grid (a scatter for
random sweeps), refreshed as the runs train and finish."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (QAbstractItemView, QComboBox, QHBoxLayout, QHeaderView, QLabel, QSplitter,
                               QTableWidget, QTableWidgetItem, QToolButton, QVBoxLayout, QWidget)

from backend.errors import WorkbenchError
from backend.run_meta import display_name
from backend.runs import run_files_stamp
from backend.sweep_results import SweepInfo, list_sweeps, sweep_row

from .sweep_plot import METRIC_LABELS, SweepPlot, value_text

REFRESH_MS = 2000


def _score(value) -> str:
    return "—" if value is None else f"{value:.4f}"


class SweepView(QWidget):
    """``show_sweep(id)`` shows one sweep; ``openRequested(str)`` asks for a run's tab (double click).
    ``manager``: the window's run manager, whose live runs show their live state (their files alone
    cannot tell a training run from an interrupted one)."""

    openRequested = Signal(str)

    def __init__(self, workspace, manager=None, parent=None):
        super().__init__(parent)
        self.workspace = Path(workspace)
        self.manager = manager
        self.sweeps: list[SweepInfo] = []
        self.sweep: SweepInfo | None = None
        self.rows = []
        self._cache: dict[str, tuple] = {}  # run dir -> (files stamp, SweepRow)
        box = QVBoxLayout(self)
        box.setContentsMargins(6, 6, 6, 6)
        top = QHBoxLayout()
        self.sweep_combo = QComboBox()
        self.sweep_combo.setMinimumWidth(320)
        self.metric_combo = QComboBox()
        for key, label in METRIC_LABELS.items():
            self.metric_combo.addItem(label, key)
        self.reload_button = QToolButton()
        self.reload_button.setText("Reload")
        self.reload_button.setToolTip("Look for new sweeps in the workspace")
        self.status = QLabel()
        top.addWidget(QLabel("Sweep"))
        top.addWidget(self.sweep_combo, 1)
        top.addWidget(QLabel("Colour"))
        top.addWidget(self.metric_combo)
        top.addWidget(self.reload_button)
        box.addLayout(top)
        box.addWidget(self.status)

        self.table = QTableWidget(0, 0)
        self.table.verticalHeader().setVisible(False)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.plot = SweepPlot()
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(self.table)
        split.addWidget(self.plot)
        split.setStretchFactor(0, 11)
        split.setStretchFactor(1, 9)
        split.setSizes([600, 480])
        box.addWidget(split, 1)

        self.sweep_combo.currentIndexChanged.connect(self._picked)
        self.metric_combo.currentIndexChanged.connect(lambda _i: self.refresh(force=True))
        self.reload_button.clicked.connect(lambda: self.reload_sweeps())
        self.table.cellDoubleClicked.connect(self._open)
        self.timer = QTimer(self)
        self.timer.timeout.connect(self.refresh)
        self.timer.start(REFRESH_MS)
        self.reload_sweeps()

    # ---- sweeps ---------------------------------------------------------------------------
    def set_workspace(self, workspace) -> None:
        """Show the sweeps of another workspace."""
        self.workspace = Path(workspace)
        self._cache.clear()
        self.reload_sweeps()

    def reload_sweeps(self, select: str | None = None) -> None:
        """Re-list the workspace's sweeps (newest first), keeping or selecting ``select``."""
        keep = select or (self.sweep.id if self.sweep else None)
        try:
            self.sweeps = list_sweeps(self.workspace)
        except (WorkbenchError, OSError) as exc:
            self.sweeps = []
            self.status.setText(f"cannot read the sweeps of {self.workspace}: {exc}")
        self.sweep_combo.blockSignals(True)
        self.sweep_combo.clear()
        for info in self.sweeps:
            label = f"{info.name or 'sweep'} — {len(info.run_dirs)} runs over {', '.join(info.fields)}  ({info.id})"
            self.sweep_combo.addItem(label, info.id)
        index = max(0, self.sweep_combo.findData(keep)) if keep else 0
        self.sweep_combo.setCurrentIndex(index if self.sweeps else -1)
        self.sweep_combo.blockSignals(False)
        self._picked()

    def show_sweep(self, sweep_id: str) -> None:
        """Show sweep ``sweep_id`` (re-listing the sweeps when it is new)."""
        if self.sweep_combo.findData(sweep_id) < 0:
            self.reload_sweeps(select=sweep_id)
        else:
            self.sweep_combo.setCurrentIndex(self.sweep_combo.findData(sweep_id))

    def _picked(self, *_a) -> None:
        sweep_id = self.sweep_combo.currentData()
        self.sweep = next((s for s in self.sweeps if s.id == sweep_id), None)
        self.refresh(force=True)

    def metric_key(self) -> str:
        """The metric the picture colours by: knn or linear_probe."""
        return self.metric_combo.currentData()

    # ---- rows -----------------------------------------------------------------------------
    def _row(self, run_dir):
        stamp = run_files_stamp(run_dir)
        cached = self._cache.get(str(run_dir))
        if cached is None or cached[0] != stamp:
            cached = (stamp, sweep_row(run_dir))
            self._cache[str(run_dir)] = cached
        live = self.manager.state(run_dir) if self.manager is not None else None
        if live is not None and live.live and live.state:
            return replace(cached[1], state=live.state)
        return cached[1]

    def refresh(self, force: bool = False) -> None:
        """Re-read the runs whose files changed and redraw (nothing to do while hidden)."""
        if not force and not self.isVisible():
            return
        if self.sweep is None:
            self.rows = []
            self.table.setRowCount(0)
            self.table.setColumnCount(0)
            self.plot.show_rows([], [])
            self.status.setText("No sweep in this workspace yet: use Sweep… in the experiment editor."
                                if not self.sweeps else "")
            return
        rows = []
        for run_dir in self.sweep.run_dirs:
            try:
                rows.append(self._row(run_dir))
            except (WorkbenchError, OSError):
                continue  # deleted meanwhile
        if not force and rows == self.rows:
            return
        self.rows = rows
        self._fill_table()
        mode = self.plot.show_rows(rows, self.sweep.fields, self.metric_key())
        done = sum(r.state == "finished" for r in rows)
        note = "" if mode != "none" else "  (a picture needs one or two fields; the table lists them all)"
        self.status.setText(f"{done} of {len(rows)} runs finished{note}")

    def _fill_table(self) -> None:
        fields = self.sweep.fields
        header = ["run", *fields, "state", "final kNN", "linear probe"]
        self.table.setColumnCount(len(header))
        self.table.setHorizontalHeaderLabels(header)
        self.table.setRowCount(len(self.rows))
        for i, row in enumerate(self.rows):
            cells = [display_name(row.run_dir) or row.run_id, *(value_text(row.point.get(f)) for f in fields), row.state,
                     _score(row.knn), _score(row.linear_probe)]
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setData(Qt.ItemDataRole.UserRole, str(row.run_dir))
                item.setToolTip(str(row.run_dir))
                if col > len(fields):
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.table.setItem(i, col, item)

    def cell_text(self, row: int, column: str) -> str:
        """The table's text at ``row`` under header ``column`` (for tests and scripts)."""
        for col in range(self.table.columnCount()):
            if self.table.horizontalHeaderItem(col).text() == column:
                return self.table.item(row, col).text()
        raise KeyError(column)

    def _open(self, row: int, _col: int) -> None:
        item = self.table.item(row, 0)
        if item is not None:
            self.openRequested.emit(item.data(Qt.ItemDataRole.UserRole))
