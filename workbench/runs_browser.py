"""The runs browser: a sortable, filterable table of every run in the workspace.

Summaries are read from the run directories (``backend.runs.summarize_run``) in a worker, only for
runs whose files changed; runs training in this session come from the ledgers the ``RunManager``
holds (their growing event files are not re-read) and show their live state. Double-click opens a run, several selected rows can be overlaid, stopped or
crashed runs with a checkpoint can be resumed.
"""

from __future__ import annotations

import time
from pathlib import Path

from PySide6.QtCore import QFileSystemWatcher, Qt, QTimer, QUrl, Signal
from PySide6.QtGui import QAction, QDesktopServices, QGuiApplication
from PySide6.QtWidgets import (QAbstractItemView, QCheckBox, QHBoxLayout, QHeaderView, QLabel, QLineEdit, QMenu,
                               QMessageBox, QPushButton, QStyledItemDelegate, QTableView, QVBoxLayout, QWidget)

from backend.runs import runs_root

from . import run_actions, workers
from .run_dialogs import ConfigDiffDialog, RunNotesDialog
from .run_manager import RunManager
from .run_meta_io import read_meta
from .run_state import RESUMABLE
from .runs_model import (COLUMNS, SORT_ROLE, STATE_COLOURS, SUMMARY_ROLE, RunsFilterProxy, RunsTableModel,
                         live_ledgers, scan_runs, scan_runs_with_meta)

__all__ = ["RunsBrowser", "RunsTableModel", "COLUMNS", "STATE_COLOURS", "scan_runs"]
REFRESH_MS = 3000  # also woken by a file system watcher on runs/ when a run appears


class ElideLeftDelegate(QStyledItemDelegate):
    """Elides on the left, so a long data path keeps its last folder name visible."""

    def initStyleOption(self, option, index):  # noqa: N802 - Qt override
        super().initStyleOption(option, index)
        option.textElideMode = Qt.TextElideMode.ElideLeft


class RunsBrowser(QWidget):
    """The table plus its actions. Signals carry run directories."""

    openRequested = Signal(object)
    compareRequested = Signal(list)
    resumeRequested = Signal(object)
    configRequested = Signal(object)
    inspectRequested = Signal(object)
    message = Signal(str)

    def __init__(self, workspace, manager: RunManager | None = None, parent=None):
        super().__init__(parent)
        self.workspace = Path(workspace)
        self.manager = manager
        self.model = RunsTableModel(manager, self)
        self.proxy = RunsFilterProxy(self)
        self.proxy.setSourceModel(self.model)
        self.proxy.setSortRole(SORT_ROLE)
        self.proxy.setFilterKeyColumn(-1)
        self.proxy.setFilterCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self._cache: dict = {}
        self._task = None
        self._again = False

        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.setSpacing(4)
        bar = QHBoxLayout()
        self.filter_edit = QLineEdit()
        self.filter_edit.setPlaceholderText("Filter runs (id, method, data, status)…")
        self.filter_edit.setClearButtonEnabled(True)
        self.filter_edit.textChanged.connect(self.proxy.setFilterFixedString)
        self.open_button = QPushButton("Open")
        self.compare_button = QPushButton("Compare")
        self.compare_button.setToolTip("Overlay the curves of the selected runs")
        self.resume_button = QPushButton("Resume")
        self.resume_button.setToolTip("Continue a stopped or crashed run from its last checkpoint")
        self.refresh_button = QPushButton("Refresh")
        self.archived_check = QCheckBox("Show archived")
        self.archived_check.toggled.connect(self.proxy.set_show_archived)
        for w in (self.filter_edit, self.open_button, self.compare_button, self.resume_button, self.archived_check,
                  self.refresh_button):
            bar.addWidget(w, 1 if w is self.filter_edit else 0)
        layout.addLayout(bar)

        self.table = QTableView()
        self.table.setItemDelegateForColumn(4, ElideLeftDelegate(self.table))  # keep the last folder visible
        self.table.setModel(self.proxy)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(0, Qt.SortOrder.DescendingOrder)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.setAlternatingRowColors(True)
        self.table.setWordWrap(False)
        self.table.verticalHeader().hide()
        self.table.verticalHeader().setDefaultSectionSize(22)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setStretchLastSection(True)
        for col, width in enumerate((250, 80, 70, 80, 90, 60, 70)):
            self.table.setColumnWidth(col, width)
        self.table.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.table.customContextMenuRequested.connect(self._context_menu)
        self.table.doubleClicked.connect(lambda _i: self.open_selected())
        self.table.selectionModel().selectionChanged.connect(lambda *_: self._update_buttons())
        layout.addWidget(self.table, 1)
        self.empty_label = QLabel()
        self.empty_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty_label.setStyleSheet("color: #757575;")
        layout.addWidget(self.empty_label)

        self.open_button.clicked.connect(self.open_selected)
        self.compare_button.clicked.connect(self.compare_selected)
        self.resume_button.clicked.connect(self.resume_selected)
        self.refresh_button.clicked.connect(self.refresh)
        self.timer = QTimer(self)
        self.timer.setInterval(REFRESH_MS)
        self.timer.timeout.connect(self.refresh)
        self.timer.start()
        self.watcher = QFileSystemWatcher(self)
        self.watcher.directoryChanged.connect(lambda _p: self.refresh())
        if manager is not None:
            manager.runChanged.connect(self.model.live_changed)
            manager.runChanged.connect(lambda _s: self._update_buttons())
            manager.runAdded.connect(lambda _s: self.refresh())
        self.set_workspace(workspace)

    # ---- data ---------------------------------------------------------------------------
    def set_workspace(self, workspace) -> None:
        """Show the runs of another workspace."""
        self.workspace = Path(workspace)
        self._cache = {}
        if self.watcher.directories():
            self.watcher.removePaths(self.watcher.directories())
        root = runs_root(self.workspace)
        for path in (self.workspace, root):
            if path.is_dir():
                self.watcher.addPath(str(path))
        self.model.set_summaries([])
        self.refresh()

    def refresh(self) -> None:
        """Re-read the workspace's runs in a worker (coalesced while one scan runs)."""
        if self._task is not None and not self._task.done:
            self._again = True
            return
        root = runs_root(self.workspace)
        if root.is_dir() and str(root) not in self.watcher.directories():
            self.watcher.addPath(str(root))
        self._task = workers.submit(scan_runs_with_meta, self.workspace, dict(self._cache), live_ledgers(self.manager),
                                    owner=self,
                                    on_result=self._apply, on_error=lambda m: self.message.emit(
                                        f"could not read the runs: {m}"),
                                    on_finished=self._scan_done)

    def _apply(self, result) -> None:
        summaries, self._cache, metas = result
        self.model.set_summaries(summaries)
        self.model.set_metas(metas)
        self.proxy.refilter()
        self.empty_label.setText("" if summaries else
                                 f"No runs yet in {self.workspace}. Configure an experiment and press Launch.")
        self.empty_label.setVisible(not summaries)
        self._update_buttons()

    def _scan_done(self) -> None:
        if self._again:
            self._again = False
            QTimer.singleShot(0, self.refresh)

    def summaries(self) -> list:
        """The listed run summaries (model order)."""
        return list(self.model.summaries)

    def view_of(self, run_dir) -> dict | None:
        """What the table shows for ``run_dir`` (state, epoch, kNN...), or None if not listed."""
        row = self.model.row_of(run_dir)
        return None if row < 0 else self.model.view_of(self.model.summaries[row])

    # ---- selection and actions -------------------------------------------------------------
    def selected_dirs(self) -> list[Path]:
        """Run directories of the selected rows (table order)."""
        rows = sorted({i.row() for i in self.table.selectionModel().selectedRows()})
        return [self.proxy.index(r, 0).data(SUMMARY_ROLE).run_dir for r in rows]

    def select(self, run_dirs) -> None:
        """Select the rows of ``run_dirs``."""
        sel = self.table.selectionModel()
        sel.clearSelection()
        for run_dir in run_dirs:
            row = self.model.row_of(run_dir)
            if row >= 0:
                idx = self.proxy.mapFromSource(self.model.index(row, 0))
                sel.select(idx, sel.SelectionFlag.Select | sel.SelectionFlag.Rows)

    def _resumable(self, run_dir) -> bool:
        view = self.view_of(run_dir)
        return bool(view and not view["live"] and not view.get("in_use") and view["has_checkpoint"]
                    and view["state"] in RESUMABLE)

    def _update_buttons(self) -> None:
        dirs = self.selected_dirs()
        self.open_button.setEnabled(len(dirs) >= 1)
        self.compare_button.setEnabled(len(dirs) >= 2)
        self.resume_button.setEnabled(len(dirs) == 1 and self._resumable(dirs[0]))

    def open_selected(self) -> None:
        """Open each selected run in its own tab."""
        for run_dir in self.selected_dirs():
            self.openRequested.emit(run_dir)

    def compare_selected(self) -> None:
        """Overlay the selected runs' curves."""
        dirs = self.selected_dirs()
        if len(dirs) >= 2:
            self.compareRequested.emit(dirs)

    def resume_selected(self) -> None:
        """Resume the selected run from its checkpoint."""
        dirs = self.selected_dirs()
        if len(dirs) == 1 and self._resumable(dirs[0]):
            self.resumeRequested.emit(dirs[0])

    def _context_menu(self, pos) -> None:
        dirs = self.selected_dirs()
        if dirs:
            menu = self.context_menu(dirs)
            menu.exec(self.table.viewport().mapToGlobal(pos))
            menu.deleteLater()  # parented to the browser: would otherwise live as long as it

    def context_menu(self, dirs) -> QMenu:
        """The right-click menu for the selected runs ``dirs`` (Resume and Delete disabled, with
        the reason, for a run that is training or that another process writes)."""
        menu = QMenu(self)
        menu.addAction("Open", self.open_selected)
        act = menu.addAction("Compare selected", self.compare_selected)
        act.setEnabled(len(dirs) >= 2)
        act = menu.addAction("Resume from checkpoint", self.resume_selected)
        act.setEnabled(len(dirs) == 1 and self._resumable(dirs[0]))
        act = menu.addAction("Inspect…", lambda: self.inspectRequested.emit(dirs[0]))
        act.setEnabled(len(dirs) == 1)
        act = menu.addAction("New run from this config", lambda: self.configRequested.emit(dirs[0]))
        act.setToolTip("Load the run's config.json into the editor")
        act.setEnabled(len(dirs) == 1)
        act = menu.addAction("Notes and tags…", lambda: self.edit_notes(dirs[0]))
        act.setEnabled(len(dirs) == 1)
        act = menu.addAction("Compare configs…", lambda: self.diff_dialog(dirs).exec())
        act.setEnabled(len(dirs) >= 2)
        menu.addAction("Comparison report…", lambda: self.write_report(dirs))
        menu.addSeparator()
        archived = all(self.model.meta(d)["archived"] for d in dirs)
        menu.addAction("Unarchive" if archived else "Archive", lambda: self.archive(dirs, not archived))
        act = menu.addAction("Delete (move to trash)…", lambda: self.delete(dirs))
        refusals = [r for r in (run_actions.delete_refusal(d, self.manager) for d in dirs) if r]
        act.setEnabled(not refusals)
        act.setToolTip("\n".join(refusals))
        menu.setToolTipsVisible(True)
        menu.addSeparator()
        menu.addAction("Show folder", lambda: QDesktopServices.openUrl(QUrl.fromLocalFile(str(dirs[0]))))
        copy = QAction("Copy path", menu)
        copy.triggered.connect(lambda: QGuiApplication.clipboard().setText("\n".join(map(str, dirs))))
        menu.addAction(copy)
        return menu

    # ---- run management ---------------------------------------------------------------------
    def reload_meta(self) -> None:
        """Re-read the listed runs' meta.json now (after an edit made here)."""
        self.model.set_metas({str(s.run_dir): read_meta(s.run_dir) for s in self.model.summaries})
        self.proxy.refilter()
        self._update_buttons()

    def notes_dialog(self, run_dir) -> RunNotesDialog:
        """The notes / tags / display name dialog of a run (saving reloads the table)."""
        dialog = RunNotesDialog(run_dir, self)
        dialog.accepted.connect(self.reload_meta)
        return dialog

    def edit_notes(self, run_dir) -> None:
        """Edit a run's notes, tags and display name."""
        self.notes_dialog(run_dir).exec()

    def diff_dialog(self, run_dirs) -> ConfigDiffDialog:
        """The side-by-side config diff of the runs (columns named as in the table)."""
        labels = [self.model.index(self.model.row_of(d), 0).data() or Path(d).name for d in run_dirs]
        return ConfigDiffDialog(run_dirs, labels, self)

    def archive(self, run_dirs, archived: bool = True) -> None:
        """Archive runs (hidden unless "Show archived") or bring them back."""
        run_actions.set_archived(run_dirs, archived)
        self.reload_meta()
        self.message.emit(f"{'archived' if archived else 'unarchived'} {len(run_dirs)} run(s)")

    def delete(self, run_dirs) -> list[Path]:
        """Move runs into <workspace>/trash/ after a confirmation; refused (with the reason) for a
        run that is training or locked by a live process. Returns where the moved runs went."""
        run_dirs = [Path(d) for d in run_dirs]
        refusals = [r for r in (run_actions.delete_refusal(d, self.manager) for d in run_dirs) if r]
        if refusals:
            QMessageBox.warning(self, "Delete runs", "Not deleted:\n" + "\n".join(refusals))
            return []
        names = "\n".join(d.name for d in run_dirs[:10]) + ("\n…" if len(run_dirs) > 10 else "")
        answer = QMessageBox.question(self, "Delete runs", f"Move {len(run_dirs)} run(s) to "
                                      f"{self.workspace / run_actions.TRASH_DIR}?\n\n{names}")
        if answer != QMessageBox.StandardButton.Yes:
            return []
        moved = [run_actions.move_to_trash(self.workspace, d, self.manager) for d in run_dirs]
        self.message.emit(f"moved {len(moved)} run(s) to {self.workspace / run_actions.TRASH_DIR}")
        self.refresh()
        return moved

    def write_report(self, run_dirs, out_path=None, open_file: bool = True):
        """Write the comparison report of ``run_dirs`` (``backend.report.write_report``) in a
        worker to ``out_path`` (default: <workspace>/reports/compare-<time>.html), then open it."""
        out = Path(out_path) if out_path else self.workspace / "reports" / f"compare-{time.strftime('%Y%m%d-%H%M%S')}.html"

        def done(path):
            self.message.emit(f"report written to {path}")
            if open_file:
                QDesktopServices.openUrl(QUrl.fromLocalFile(str(path)))

        return workers.submit(run_actions.report_task, [Path(d) for d in run_dirs], out, owner=self, on_result=done,
                              on_error=lambda m: self.message.emit(f"could not write the report: {m}"))
