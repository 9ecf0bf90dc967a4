"""The runs table's model: run summaries read from the workspace in a worker (a run's files are
re-read only when they changed, and a growing events file only from where the last read stopped;
a run training in this session is not read at all, its row comes from the ledger the
``RunManager`` holds), overlaid with the live states."""

from __future__ import annotations

import copy
from pathlib import Path

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QSortFilterProxyModel, Qt
from PySide6.QtGui import QColor

from backend.ledger import RunLedger, shown_epoch
from backend.run_lock import lock_holder
from backend.runs import CONFIG_FILE, RunReader, runs_root

from .run_manager import RunManager, run_key
from .run_meta_io import DEFAULTS, read_metas
from .run_state import run_label

COLUMNS = ("Run", "Status", "Method", "Backbone", "Data", "Epoch", "Best kNN", "Tags")
SORT_ROLE = Qt.ItemDataRole.UserRole + 1
SUMMARY_ROLE = Qt.ItemDataRole.UserRole
STATE_COLOURS = {"finished": "#2e7d32", "running": "#1565c0", "starting": "#1565c0",
                 "loading data": "#1565c0", "paused": "#ef6c00", "stopping": "#ef6c00",
                 "stopped": "#6d4c41", "error": "#c62828", "crashed": "#c62828",
                 "interrupted": "#ad1457", "invalid": "#c62828"}


def short_source(spec: str) -> str:
    """'imagefolder:/data/pets' -> 'pets/ (folder)'; other specs unchanged."""
    if spec.startswith("imagefolder:"):
        return f"{Path(spec[len('imagefolder:'):]).name}/ (folder)"
    return spec


def live_ledgers(manager: RunManager | None) -> dict[str, RunLedger]:
    """GUI thread: {run_dir: a snapshot of its ledger} for every run training in this session
    (shallow copies: the worker reads them while the live ledgers move on)."""
    if manager is None:
        return {}
    return {str(state.run_dir): copy.copy(state.ledger) for state in manager.live_states().values()}


def scan_runs(ctx, workspace, cache: dict, live: dict | None = None) -> tuple[list, dict]:
    """Worker: summaries of every run under the workspace, newest first. ``cache`` ({run_dir:
    RunReader}, from the previous scan) makes a run cost only what changed in its files (nothing
    when nothing did; the appended events of a growing events.jsonl). Runs in ``live`` ({run_dir:
    RunLedger}, see ``live_ledgers``) are summarised from their ledger, their files not read (but
    config.json when it changed). Returns (summaries, cache)."""
    root = runs_root(workspace)
    if not root.is_dir():
        return [], {}
    live = live or {}
    fresh, summaries = {}, []
    dirs = sorted((p for p in root.iterdir() if p.is_dir() and (p / CONFIG_FILE).exists()),
                  key=lambda p: p.name, reverse=True)
    for i, run_dir in enumerate(dirs):
        ctx.check()
        key = str(run_dir)
        reader = fresh[key] = cache.get(key) or RunReader(run_dir)
        ledger = live.get(key)
        summaries.append(reader.read() if ledger is None else reader.with_ledger(ledger))
        ctx.progress((i + 1) / len(dirs), "")
    return summaries, fresh


def scan_runs_with_meta(ctx, workspace, cache: dict, live: dict | None = None) -> tuple[list, dict, dict]:
    """Worker: ``scan_runs`` plus every listed run's meta.json (notes, tags, display name,
    archived). Returns (summaries, cache, {run_dir: meta})."""
    summaries, cache = scan_runs(ctx, workspace, cache, live)
    return summaries, cache, read_metas(s.run_dir for s in summaries)


class RunsFilterProxy(QSortFilterProxyModel):
    """The filter box's text filter, and archived runs hidden unless ``show_archived``."""

    show_archived = False

    def set_show_archived(self, show: bool) -> None:
        """Show (True) or hide archived runs."""
        self.show_archived = bool(show)
        self.refilter()

    def refilter(self) -> None:
        """Apply the filter again (the archived flags changed)."""
        if hasattr(self, "beginFilterChange"):  # Qt >= 6.10 (invalidateFilter is deprecated there)
            self.beginFilterChange()
            self.endFilterChange(QSortFilterProxyModel.Direction.Rows)
        else:
            self.invalidateRowsFilter()

    def filterAcceptsRow(self, row, parent):  # noqa: N802 - Qt override
        model = self.sourceModel()
        if not self.show_archived and model.meta(model.summaries[row].run_dir)["archived"]:
            return False
        return super().filterAcceptsRow(row, parent)


class RunsTableModel(QAbstractTableModel):
    """Rows of ``RunSummary``; live states from a ``RunManager`` override the files' view."""

    def __init__(self, manager: RunManager | None = None, parent=None):
        super().__init__(parent)
        self.summaries: list = []
        self.metas: dict[str, dict] = {}  # str(run_dir) -> meta.json contents
        self.manager = manager
        self.in_use: dict[str, str] = {}   # run_dir -> "PID 12 on host h since 10:41 (sslwb train)"

    def rowCount(self, parent=QModelIndex()):  # noqa: N802 - Qt override
        return 0 if parent.isValid() else len(self.summaries)

    def columnCount(self, parent=QModelIndex()):  # noqa: N802 - Qt override
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole):  # noqa: N802
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section]
        return None

    def set_summaries(self, summaries: list) -> None:
        """Replace the rows (in place when the same runs are listed, so selection survives).
        Runs whose writer lock a live process holds that this GUI did not start are "in use"."""
        self.in_use = self._held_elsewhere(summaries)
        if [s.run_dir for s in summaries] == [s.run_dir for s in self.summaries]:
            self.summaries = list(summaries)
            if summaries:
                self.dataChanged.emit(self.index(0, 0), self.index(len(summaries) - 1, len(COLUMNS) - 1))
            return
        self.beginResetModel()
        self.summaries = list(summaries)
        self.endResetModel()

    def set_metas(self, metas: dict) -> None:
        """New run metadata (names, tags, archived flags): redraw every row."""
        self.metas = dict(metas)
        if self.summaries:
            self.dataChanged.emit(self.index(0, 0), self.index(len(self.summaries) - 1, len(COLUMNS) - 1))

    def meta(self, run_dir) -> dict:
        """A run's metadata (defaults when it has none)."""
        return self.metas.get(str(run_dir), DEFAULTS)

    def _held_elsewhere(self, summaries) -> dict[str, str]:
        held = {}
        for s in summaries:
            live = self.manager.state(s.run_dir) if self.manager else None
            if live is not None and live.live:
                continue  # our own trainer holds it
            holder = lock_holder(s.run_dir)
            if holder is not None:
                held[str(s.run_dir)] = holder.describe()
        return held

    def row_of(self, run_dir) -> int:
        """Row of a run directory (-1 if not listed)."""
        key = run_key(run_dir)
        return next((i for i, s in enumerate(self.summaries) if run_key(s.run_dir) == key), -1)

    def live_changed(self, state) -> None:
        """A live run changed: redraw its row."""
        row = self.row_of(state.run_dir)
        if row >= 0:
            self.dataChanged.emit(self.index(row, 0), self.index(row, len(COLUMNS) - 1))

    def view_of(self, summary) -> dict:
        """The values shown for a run: its summary, overridden by the live state when known."""
        live = self.manager.state(summary.run_dir) if self.manager else None
        view = {"state": summary.state, "message": summary.message, "epoch": summary.epoch,
                "epochs": summary.epochs, "step": summary.step, "knn": summary.best_knn, "has_checkpoint": summary.has_checkpoint,
                "live": False, "in_use": self.in_use.get(str(summary.run_dir))}
        if live is not None and (live.live or live.state != "created"):
            led = live.ledger  # the same fold as the summary's, and up to date
            view.update(state=led.state, message=led.message, live=live.live, epoch=led.epoch, step=led.step,
                        has_checkpoint=led.has_checkpoint or summary.has_checkpoint,
                        epochs=led.epochs or summary.epochs)
            if led.best_knn is not None and (view["knn"] is None or led.best_knn > view["knn"]):
                view["knn"] = led.best_knn
        return view

    def data(self, index, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        s = self.summaries[index.row()]
        col = index.column()
        if role == SUMMARY_ROLE:
            return s
        v = self.view_of(s)
        if role in (Qt.ItemDataRole.DisplayRole, SORT_ROLE):
            meta = self.meta(s.run_dir)
            if col == 0:  # the user's name first (ids of one method differ only in their time)
                return s.run_id if role == SORT_ROLE else meta["display_name"] or run_label(s.name, s.run_id)
            if col == 1:
                return "in use" if v["in_use"] and not v["live"] else v["state"]
            if col == 2:
                return s.method
            if col == 3:
                return s.backbone
            if col == 4:
                return short_source(s.data)
            if col == 5:
                if role == SORT_ROLE:
                    return v["epoch"]
                done = shown_epoch(v["state"], v["epoch"], v["epochs"], started=bool(v["step"]))
                return f"{done}/{v['epochs']}" if v["epochs"] else ""
            if col == 6:
                if role == SORT_ROLE:
                    return -1.0 if v["knn"] is None else v["knn"]
                return "" if v["knn"] is None else f"{100 * v['knn']:.1f} %"
            if col == 7:
                return ", ".join(meta["tags"])
        if role == Qt.ItemDataRole.ToolTipRole:
            if col == 4 and s.data:
                return s.data
            lines = [f"id: {s.run_id}", str(s.run_dir), f"{v['state']}: {v['message']}" if v["message"] else v["state"]]
            if v["in_use"] and not v["live"]:
                lines.append(f"in use by {v['in_use']}: Resume is disabled while it runs")
            if v["has_checkpoint"]:
                lines.append("has a checkpoint")
            notes = self.meta(s.run_dir)["notes"]
            if notes:
                lines.append("notes: " + (notes if len(notes) < 300 else notes[:300] + "…"))
            return "\n".join(lines)
        if role == Qt.ItemDataRole.ForegroundRole and col == 1:
            return QColor(STATE_COLOURS.get(v["state"], "#424242"))
        if role == Qt.ItemDataRole.TextAlignmentRole and col in (5, 6):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None
