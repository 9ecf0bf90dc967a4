"""Dialogs of the runs browser: a run's notes, tags and display name; the side-by-side config diff
of several runs (``backend.report.config_diff``)."""

from __future__ import annotations

import json
from pathlib import Path

from PySide6.QtWidgets import (QCheckBox, QDialog, QDialogButtonBox, QFormLayout, QHeaderView, QLineEdit,
                               QPlainTextEdit, QTableWidget, QTableWidgetItem, QVBoxLayout)

from backend.report import ALWAYS_FIELDS, config_diff, flatten
from backend.runs import CONFIG_FILE

from .run_meta_io import parse_tags, read_meta, write_meta


class RunNotesDialog(QDialog):
    """Edit a run's display name, tags (comma-separated) and notes; OK saves them to meta.json."""

    def __init__(self, run_dir, parent=None):
        super().__init__(parent)
        self.run_dir = Path(run_dir)
        self.setWindowTitle(f"Notes \u2014 {self.run_dir.name}")
        meta = read_meta(self.run_dir)
        self.name_edit = QLineEdit(meta["display_name"])
        self.name_edit.setPlaceholderText("shown instead of the config name / run id")
        self.tags_edit = QLineEdit(", ".join(meta["tags"]))
        self.tags_edit.setPlaceholderText("baseline, lr-sweep, ...")
        self.notes_edit = QPlainTextEdit(meta["notes"])
        self.notes_edit.setPlaceholderText("What this run tries, what came out of it…")
        form = QFormLayout()
        form.addRow("Display name", self.name_edit)
        form.addRow("Tags", self.tags_edit)
        form.addRow("Notes", self.notes_edit)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(buttons)
        self.resize(480, 360)

    def save(self) -> dict:
        """Write what the fields hold to meta.json; returns the new metadata."""
        return write_meta(self.run_dir, display_name=self.name_edit.text().strip(),
                          tags=parse_tags(self.tags_edit.text()), notes=self.notes_edit.toPlainText())

    def accept(self) -> None:
        """Save, then close."""
        self.save()
        super().accept()


def _value_text(value) -> str:
    return "" if value is None else value if isinstance(value, str) else json.dumps(value)


def _run_config(run_dir: Path) -> dict:
    """The config dict of a run's config.json (its ``config`` part), unvalidated: an old run whose
    fields no longer validate still compares. ValueError when the file is missing or not JSON."""
    path = run_dir / CONFIG_FILE
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from exc
    config = payload.get("config", payload) if isinstance(payload, dict) else None
    if not isinstance(config, dict):
        raise ValueError(f"{path} holds no config object")
    return config


class ConfigDiffDialog(QDialog):
    """A table of config fields (rows) by run (columns): only the fields that differ (plus method,
    backbone and data, which name the runs), or every field with "Show all fields"."""

    def __init__(self, run_dirs, labels=None, parent=None):
        super().__init__(parent)
        self.run_dirs = [Path(d) for d in run_dirs]
        if len(self.run_dirs) < 2:
            raise ValueError("a config diff needs at least two runs")
        self.labels = list(labels or [d.name for d in self.run_dirs])
        self.configs = [_run_config(d) for d in self.run_dirs]
        self.flat = [flatten(c) for c in self.configs]
        self.setWindowTitle(f"Config diff \u2014 {len(self.run_dirs)} runs")
        self.show_all = QCheckBox("Show all fields")
        self.show_all.toggled.connect(self.refresh)
        self.table = QTableWidget()
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        self.table.horizontalHeader().setStretchLastSection(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.show_all)
        layout.addWidget(self.table, 1)
        layout.addWidget(buttons)
        self.resize(260 + 200 * len(self.run_dirs), 480)
        self.refresh()

    def fields(self) -> list[str]:
        """The field paths shown now (table order)."""
        if self.show_all.isChecked():
            return sorted(set().union(*self.flat))
        return config_diff(self.configs)

    def differing(self) -> list[str]:
        """The fields whose values differ across the runs."""
        return [f for f in config_diff(self.configs) if f not in ALWAYS_FIELDS
                or len({json.dumps(c.get(f), sort_keys=True) for c in self.flat}) > 1]

    def refresh(self) -> None:
        """Fill the table for the current "show all" choice; differing rows are bold."""
        fields, differing = self.fields(), set(self.differing())
        self.table.clear()
        self.table.setRowCount(len(fields))
        self.table.setColumnCount(len(self.run_dirs))
        self.table.setHorizontalHeaderLabels(self.labels)
        self.table.setVerticalHeaderLabels(fields)
        for row, name in enumerate(fields):
            for col, flat in enumerate(self.flat):
                item = QTableWidgetItem(_value_text(flat.get(name)) if name in flat else "(absent)")
                if name in differing:
                    font = item.font()
                    font.setBold(True)
                    item.setFont(font)
                self.table.setItem(row, col, item)
        for col in range(len(self.run_dirs)):
            self.table.setColumnWidth(col, 200)

    def cell(self, name: str, col: int) -> str:
        """The text shown for field ``name`` in run column ``col`` (for tests)."""
        return self.table.item(self.fields().index(name), col).text()
