"""The Sweep dialog: fields and values of a grid (comma lists) or a random sweep (N points from
ranges ``uniform:LO:HI`` / ``log-uniform:LO:HI`` or comma lists of choices) over the editor's
config; OK creates one run per point with ``backend.sweep`` (tagged with the sweep) and queues
them."""

from __future__ import annotations

from PySide6.QtWidgets import (QAbstractItemView, QComboBox, QDialog, QDialogButtonBox, QFormLayout,
                               QHBoxLayout, QHeaderView, QLabel, QLineEdit, QSpinBox, QTableWidget,
                               QTableWidgetItem, QToolButton, QVBoxLayout)

from backend.config import ExperimentConfig
from backend.config_fields import iter_fields
from backend.errors import ConfigError, WorkbenchError
from backend.run_meta import read_meta
from backend.sweep import create_sweep, expand_grid, parse_values, sample_random

DEFAULT_FIELDS = ("method.temperature", "optim.lr")


def numeric_fields(cfg: ExperimentConfig) -> list[str]:
    """Dotted names of the config's number fields (the usual things to sweep)."""
    return [path for path, _f, value in iter_fields(cfg)
            if isinstance(value, (int, float)) and not isinstance(value, bool)]


class SweepDialog(QDialog):
    """After ``accept``: ``run_dirs`` (the created runs) and ``sweep_id``."""

    def __init__(self, cfg: ExperimentConfig, workspace, device: str, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Sweep")
        self.cfg, self.workspace, self.device = cfg, workspace, device
        self.run_dirs: list = []
        self.sweep_id = ""
        self.fields = numeric_fields(cfg)
        box = QVBoxLayout(self)
        form = QFormLayout()
        self.name_edit = QLineEdit(cfg.name or "sweep")
        self.mode_combo = QComboBox()
        self.mode_combo.addItem("Grid: every combination", "grid")
        self.mode_combo.addItem("Random: N points", "random")
        self.points_spin = QSpinBox()
        self.points_spin.setRange(1, 1000)
        self.points_spin.setValue(8)
        self.seed_spin = QSpinBox()
        self.seed_spin.setRange(0, 2 ** 31 - 1)
        form.addRow("Sweep name", self.name_edit)
        form.addRow("Mode", self.mode_combo)
        form.addRow("Points", self.points_spin)
        form.addRow("Seed", self.seed_spin)
        box.addLayout(form)

        self.table = QTableWidget(0, 2)
        self.table.setHorizontalHeaderLabels(["Field", "Values"])
        self.table.verticalHeader().setVisible(False)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.table.setColumnWidth(0, 220)
        box.addWidget(self.table, 1)
        row = QHBoxLayout()
        add, remove = QToolButton(), QToolButton()
        add.setText("Add field")
        remove.setText("Remove field")
        add.clicked.connect(lambda: self.add_field())
        remove.clicked.connect(self._remove_field)
        row.addWidget(add)
        row.addWidget(remove)
        row.addStretch(1)
        box.addLayout(row)
        self.hint = QLabel()
        self.hint.setWordWrap(True)
        self.summary = QLabel()
        self.summary.setWordWrap(True)
        box.addWidget(self.hint)
        box.addWidget(self.summary)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.ok_button = buttons.button(QDialogButtonBox.StandardButton.Ok)
        self.ok_button.setText("Create and queue")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        box.addWidget(buttons)

        for name in DEFAULT_FIELDS:
            if name in self.fields:
                self.add_field(name, "")
        self.mode_combo.currentIndexChanged.connect(self._mode_changed)
        self.points_spin.valueChanged.connect(self._update_summary)
        self.table.itemChanged.connect(self._update_summary)
        self._mode_changed()
        self.resize(620, 420)

    # ---- fields ---------------------------------------------------------------------------
    def add_field(self, name: str = "", values: str = "") -> None:
        """Add a row: a field (editable list of the config's number fields) and its values."""
        row = self.table.rowCount()
        self.table.insertRow(row)
        combo = QComboBox()
        combo.setEditable(True)
        combo.addItems(self.fields)
        combo.setCurrentText(name)
        combo.currentTextChanged.connect(self._update_summary)
        self.table.setCellWidget(row, 0, combo)
        self.table.setItem(row, 1, QTableWidgetItem(values))

    def set_fields(self, fields) -> None:
        """Replace the rows by ``[(field, values text), ...]``."""
        self.table.setRowCount(0)
        for name, values in fields:
            self.add_field(name, values)
        self._update_summary()

    def _remove_field(self) -> None:
        rows = sorted({i.row() for i in self.table.selectedIndexes()} or {self.table.rowCount() - 1}, reverse=True)
        for row in rows:
            if row >= 0:
                self.table.removeRow(row)
        self._update_summary()

    def set_mode(self, mode: str, points: int | None = None, seed: int | None = None) -> None:
        """``grid`` or ``random`` (with ``points`` and ``seed``)."""
        self.mode_combo.setCurrentIndex(self.mode_combo.findData(mode))
        if points is not None:
            self.points_spin.setValue(points)
        if seed is not None:
            self.seed_spin.setValue(seed)

    def mode(self) -> str:
        """The sweep mode: grid or random."""
        return self.mode_combo.currentData()

    def _mode_changed(self, *_a) -> None:
        random_mode = self.mode() == "random"
        self.points_spin.setEnabled(random_mode)
        self.seed_spin.setEnabled(random_mode)
        self.hint.setText("Values: <b>uniform:LO:HI</b>, <b>log-uniform:LO:HI</b> or a comma list of choices"
                          if random_mode else "Values: a comma list per field, e.g. <b>0.1, 0.2, 0.5</b>")
        self._update_summary()

    # ---- points ---------------------------------------------------------------------------
    def spec(self) -> dict:
        """{field: values text} of the rows (a bad or repeated field raises ConfigError)."""
        out = {}
        for row in range(self.table.rowCount()):
            name = self.table.cellWidget(row, 0).currentText().strip()
            item = self.table.item(row, 1)
            text = item.text().strip() if item else ""
            if not name and not text:
                continue
            if not name:
                raise ConfigError(f"row {row + 1}: choose a field")
            if name in out:
                raise ConfigError(f"{name} is swept twice")
            if not text:
                raise ConfigError(f"{name}: give its values")
            out[name] = text
        if not out:
            raise ConfigError("add a field and its values")
        return out

    def points(self) -> list[dict]:
        """The sweep's points (ConfigError when a row is bad)."""
        spec = self.spec()
        if self.mode() == "grid":
            return expand_grid({name: parse_values(text) for name, text in spec.items()})
        space = {name: (text if text.split(":", 1)[0] in ("uniform", "log-uniform") else parse_values(text))
                 for name, text in spec.items()}
        return sample_random(space, self.points_spin.value(), self.seed_spin.value())

    def _update_summary(self, *_a) -> None:
        try:
            n = len(self.points())
        except ConfigError as exc:
            self.summary.setText(f"<span style='color:#c62828'>{exc}</span>")
            self.ok_button.setEnabled(False)
            return
        self.summary.setText(f"{n} run{'s' if n != 1 else ''}, queued on {self.device}")
        self.ok_button.setEnabled(True)

    def accept(self) -> None:
        """Create the runs (every point validated first) and queue them; on a bad point, say so and stay."""
        name = self.name_edit.text().strip()
        try:
            base = ExperimentConfig.from_dict(self.cfg.to_dict())
            base.name = "" if name else base.name  # the runs are then called NAME-0, NAME-1, ...
            self.run_dirs = create_sweep(self.workspace, base, self.points(), name=name, device=self.device)
        except WorkbenchError as exc:
            lines = getattr(exc, "errors", None) or [str(exc)]
            self.summary.setText("<span style='color:#c62828'>" + "<br>".join(map(str, lines[:6])) + "</span>")
            return
        self.sweep_id = (read_meta(self.run_dirs[0]).get("sweep") or {}).get("id", "")
        super().accept()

