"""The Queue dock: the workspace's run queue (queued, training, done), reordering and removing
queued runs, and how many runs train at once (one per GPU; a chosen number on the CPU)."""

from __future__ import annotations

import time
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (QAbstractItemView, QCheckBox, QHBoxLayout, QHeaderView, QLabel, QSpinBox,
                               QTableWidget, QTableWidgetItem, QToolButton, QVBoxLayout, QWidget)

from backend.errors import WorkbenchError
from backend.run_meta import display_name

from .queue_runner import QueueRunner

COLUMNS = ("#", "Run", "State", "Device", "Queued")
STATE_COLOURS = {"queued": "#6d6d6d", "started": "#1565c0", "done": "#2e7d32", "failed": "#c62828"}


def _when(stamp) -> str:
    return time.strftime("%H:%M:%S", time.localtime(stamp)) if stamp else ""


class QueueView(QWidget):
    """Lists the runner's entries (refreshed on every poll). ``openRequested(str)``: a run dir to
    show in its tab (double click); ``message(str)`` for the status bar."""

    openRequested = Signal(str)
    message = Signal(str)

    def __init__(self, runner: QueueRunner, parent=None):
        super().__init__(parent)
        self.runner = runner
        self._names: dict[str, str] = {}
        box = QVBoxLayout(self)
        box.setContentsMargins(4, 4, 4, 4)
        top = QHBoxLayout()
        self.autostart_box = QCheckBox("Start queued runs")
        self.autostart_box.setChecked(runner.autostart)
        self.autostart_box.setToolTip("Start the next queued run whenever a device slot is free")
        self.cpu_spin = QSpinBox()
        self.cpu_spin.setRange(0, 64)
        self.cpu_spin.setValue(runner.max_cpu_runs)
        self.cpu_spin.setToolTip("How many queued runs may train on the CPU at once (each GPU takes one run)")
        self.slots_label = QLabel()
        top.addWidget(self.autostart_box)
        top.addSpacing(12)
        top.addWidget(QLabel("CPU runs at once"))
        top.addWidget(self.cpu_spin)
        top.addWidget(self.slots_label, 1)
        box.addLayout(top)

        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.verticalHeader().setVisible(False)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        box.addWidget(self.table, 1)

        row = QHBoxLayout()
        self.up_button = self._button("Up", "Start this queued run sooner", lambda: self._move(-1))
        self.down_button = self._button("Down", "Start this queued run later", lambda: self._move(1))
        self.remove_button = self._button("Remove", "Take the run out of the queue (its folder stays)", self._remove)
        self.requeue_button = self._button("Queue again", "Queue a done or failed run again", self._requeue)
        self.clear_button = self._button("Clear done", "Drop the done entries", runner.clear_finished)
        for button in (self.up_button, self.down_button, self.remove_button, self.requeue_button):
            row.addWidget(button)
        row.addStretch(1)
        row.addWidget(self.clear_button)
        box.addLayout(row)

        self.autostart_box.toggled.connect(runner.set_autostart)
        self.cpu_spin.valueChanged.connect(runner.set_max_cpu_runs)
        self.table.itemSelectionChanged.connect(self._update_buttons)
        self.table.cellDoubleClicked.connect(lambda r, _c: self._open(r))
        runner.entriesChanged.connect(self.show_entries)
        self.show_entries(runner.entries)

    def _button(self, text: str, tip: str, slot) -> QToolButton:
        button = QToolButton()
        button.setText(text)
        button.setToolTip(tip)
        button.clicked.connect(slot)
        return button

    # ---- showing ------------------------------------------------------------------------
    def _name(self, run_dir: str) -> str:
        if run_dir not in self._names:
            try:
                self._names[run_dir] = display_name(run_dir) or Path(run_dir).name
            except (WorkbenchError, OSError, ValueError):
                self._names[run_dir] = Path(run_dir).name
        return self._names[run_dir]

    def state_text(self, entry) -> str:
        """What the State column says: the queue's state, with the live run's progress or the
        way a finished trainer ended (finished, stopped, error, crashed)."""
        run = self.runner.manager.state(entry.run_dir)
        if entry.state == "started" and run is not None and run.live:
            if not run.step:
                return run.state
            total = f"/{run.total_steps}" if run.total_steps else ""
            return f"{run.state} · step {run.step}{total}"
        if entry.state in ("done", "failed") and run is not None and run.state not in ("", entry.state):
            return f"{entry.state} ({run.state})"
        if entry.state == "failed" and entry.exit_code is not None:
            return f"failed (exit {entry.exit_code})"
        return {"started": "training"}.get(entry.state, entry.state)

    def show_entries(self, entries) -> None:
        """Fill the table from queue entries (the selected run stays selected)."""
        selected = self.selected_run()
        cpu = self.runner.max_cpu_runs
        gpus = len(self.runner.known_gpus())
        busy = sum(e.state == "started" for e in entries)
        queued = sum(e.state == "queued" for e in entries)
        self.slots_label.setText(f"  {busy} training, {queued} queued"
                                 + (f"; {gpus} GPU slot{'s' if gpus != 1 else ''}" if gpus else "")
                                 + ("" if cpu or gpus else " — no slot: nothing starts"))
        self.table.setRowCount(len(entries))
        for i, e in enumerate(entries):
            cells = (str(i + 1), self._name(e.run_dir), self.state_text(e), e.assigned or e.device, _when(e.created))
            for col, text in enumerate(cells):
                item = self.table.item(i, col)
                if item is None:
                    item = QTableWidgetItem()
                    self.table.setItem(i, col, item)
                item.setText(text)
                item.setData(Qt.ItemDataRole.UserRole, e.run_dir)
                item.setToolTip(e.run_dir)
            self.table.item(i, 2).setForeground(QColor(STATE_COLOURS.get(e.state, "#000000")))
        if selected:
            self.select_run(selected)
        self._update_buttons()

    def rows(self) -> list[tuple[str, str]]:
        """(run dir, state text) of each row, in order (for tests and scripts)."""
        return [(self.table.item(r, 1).data(Qt.ItemDataRole.UserRole), self.table.item(r, 2).text())
                for r in range(self.table.rowCount())]

    # ---- selection and actions --------------------------------------------------------------
    def selected_run(self) -> str | None:
        """The run dir of the selected row, or None."""
        rows = self.table.selectionModel().selectedRows() if self.table.selectionModel() else []
        if not rows:
            return None
        item = self.table.item(rows[0].row(), 1)
        return item.data(Qt.ItemDataRole.UserRole) if item else None

    def select_run(self, run_dir) -> None:
        """Select the row of ``run_dir``."""
        for r in range(self.table.rowCount()):
            if self.table.item(r, 1).data(Qt.ItemDataRole.UserRole) == str(run_dir):
                self.table.selectRow(r)
                return

    def _selected_entry(self):
        run_dir = self.selected_run()
        return next((e for e in self.runner.entries if e.run_dir == run_dir), None)

    def _update_buttons(self) -> None:
        entry = self._selected_entry()
        state = entry.state if entry else None
        self.up_button.setEnabled(state == "queued")
        self.down_button.setEnabled(state == "queued")
        self.remove_button.setEnabled(state is not None and state != "started")
        self.requeue_button.setEnabled(state in ("done", "failed"))
        self.clear_button.setEnabled(any(e.state == "done" for e in self.runner.entries))

    def _act(self, action, *args) -> None:
        try:
            action(*args)
        except WorkbenchError as exc:
            self.message.emit(str(exc))

    def _move(self, offset: int) -> None:
        run_dir = self.selected_run()
        if run_dir:
            self._act(self.runner.move, run_dir, offset)
            self.select_run(run_dir)

    def _remove(self) -> None:
        run_dir = self.selected_run()
        if run_dir:
            self._act(self.runner.remove, run_dir)

    def _requeue(self) -> None:
        entry = self._selected_entry()
        if entry is not None:
            self._act(self.runner.enqueue, [entry.run_dir], entry.device)

    def _open(self, row: int) -> None:
        item = self.table.item(row, 1)
        if item is not None:
            self.openRequested.emit(item.data(Qt.ItemDataRole.UserRole))
