"""The experiment editor: the method picker grouped by family with its method card
(``method_picker``), the preset picker, the generated config form, the data source picker
(``source_picker``: scans image folders off the GUI thread), config files, inline validation, the
device picker and the Launch button. Launch follows the model's validity, which includes the
data-folder check (run off the GUI thread by ``ConfigModel``); Launch itself re-checks the folder
(``backend.data.registry.check_source``) and refuses before any trainer starts when it is missing,
unreadable, empty, has empty class folders or loops."""

from __future__ import annotations

import html
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QFileDialog, QFormLayout, QFrame, QHBoxLayout, QLabel,
                               QLineEdit, QPushButton, QScrollArea, QSizePolicy, QToolButton,
                               QVBoxLayout, QWidget)

from backend.config import list_presets
from backend.data.registry import check_source
from backend.errors import ConfigError
from backend.methods import method_specs

from . import process, settings, workers
from .config_form import Combo, ConfigForm
from .config_model import DEFAULTS, ConfigModel, needs_folder_check, preset_method
from .field_search import FieldSearch
from .method_picker import MethodCard, MethodPicker
from .process import warm_up
from .source_picker import SourcePicker

CONFIG_FILTER = "Experiment configs (*.toml *.json);;All files (*)"


def method_choices() -> list[tuple[str, str]]:
    """(label, name) of every registered method, by label (from the torch-free catalogue)."""
    return sorted(((spec.label, name) for name, spec in method_specs().items()), key=lambda x: x[0].lower())


class ExperimentEditor(QWidget):
    """The whole editor. ``launchRequested(ExperimentConfig, device)`` when Launch is pressed (with
    ``processes()`` trainer processes: 1, or one per GPU when the machine's GPUs are chosen),
    ``queueRequested`` / ``sweepRequested`` (same arguments) for Add to queue and Sweep…;
    ``message(str)`` for the status bar (file loaded, saved, errors)."""

    launchRequested = Signal(object, str)
    queueRequested = Signal(object, str)
    sweepRequested = Signal(object, str)
    message = Signal(str)

    def __init__(self, model: ConfigModel | None = None, parent=None):
        super().__init__(parent)
        self.model = model or ConfigModel(parent=self)
        self.setMinimumWidth(360)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(6, 6, 6, 6)
        outer.setSpacing(6)

        head = QFormLayout()
        head.setLabelAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        self.method_combo = MethodPicker()
        self.method_combo.setToolTip("Self-supervised method, grouped by family. Fields that do not apply "
                                     "to it are hidden.<br><i>method.name</i>")
        self.method_card = MethodCard()
        self.preset_combo = Combo()
        self.preset_combo.setToolTip("Fill the form from a preset of the shipped recipes (resources/presets).")
        self.name_edit = QLineEdit()
        self.name_edit.setPlaceholderText("optional; becomes part of the run id")
        self.name_edit.setToolTip("Free-form run name.<br><i>name</i>")
        self.open_button = QToolButton()
        self.open_button.setText("Open…")
        self.open_button.setToolTip("Load a TOML/JSON config file (or a run's config.json)")
        self.save_button = QToolButton()
        self.save_button.setText("Save…")
        self.save_button.setToolTip("Save this config as TOML or JSON")
        preset_row = QHBoxLayout()
        preset_row.addWidget(self.preset_combo, 1)
        preset_row.addWidget(self.open_button)
        preset_row.addWidget(self.save_button)
        head.addRow("Method", self.method_combo)
        head.addRow("", self.method_card)
        head.addRow("Preset", preset_row)
        head.addRow("Run name", self.name_edit)
        outer.addLayout(head)

        self.form = ConfigForm(self.model, skip=("method.name", "runtime.device"),
                               custom={"data.source": SourcePicker},
                               collapsed=("eval", "runtime"))
        self.search = FieldSearch(self.form, self)
        outer.addWidget(self.search)
        self.scroll = scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setWidget(self.form)
        outer.addWidget(scroll, 1)
        self._scroll_before_search: int | None = None

        self.problems = QLabel()
        self.problems.setObjectName("problems")
        self.problems.setWordWrap(True)
        self.problems.setTextFormat(Qt.TextFormat.RichText)
        self.problems.linkActivated.connect(self.focus_field)
        outer.addWidget(self.problems)
        foot = QHBoxLayout()
        self.device_combo = Combo()
        self.device_combo.setToolTip("Where the trainer runs (sets runtime.device)")
        self.device_combo.addItem("CPU", "cpu")
        self.launch_button = QPushButton("Launch")
        self.launch_button.setObjectName("launchButton")
        self.launch_button.setToolTip("Create a run in the workspace and start training it")
        self.launch_button.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.gpus_combo = Combo()   # shown when this machine has several GPUs (offer_gpus)
        self.gpus_combo.setToolTip("Train on one GPU (the device chosen on the left), or on every GPU of "
                                   "this machine: one process per GPU under torchrun (DDP), the global batch "
                                   "split between them")
        self.gpus_combo.hide()
        foot.addWidget(QLabel("Device"))
        foot.addWidget(self.device_combo)
        foot.addWidget(self.gpus_combo)
        foot.addWidget(self.launch_button, 1)
        self.queue_button = QToolButton()
        self.queue_button.setText("Add to queue")
        self.queue_button.setToolTip("Create the run and queue it: it starts when a device slot is free")
        self.sweep_button = QToolButton()
        self.sweep_button.setText("Sweep…")
        self.sweep_button.setToolTip("A grid or random sweep over chosen fields: one queued run per point")
        foot.addWidget(self.queue_button)
        foot.addWidget(self.sweep_button)
        outer.addLayout(foot)

        self.method_combo.currentIndexChanged.connect(self._method_picked)
        self.preset_combo.activated.connect(self._preset_picked)
        self.name_edit.textEdited.connect(lambda t: self.model.set_value("name", t))
        self.open_button.clicked.connect(self.open_dialog)
        self.save_button.clicked.connect(self.save_dialog)
        self.launch_button.clicked.connect(self.launch)
        self.gpus_combo.currentIndexChanged.connect(self._gpus_picked)
        self.search.edit.textChanged.connect(self._search_scroll)
        self.search.activated.connect(self.focus_field)
        self.queue_button.clicked.connect(lambda: self.launch(self.queueRequested))
        self.sweep_button.clicked.connect(lambda: self.launch(self.sweepRequested))
        self.model.valueChanged.connect(self._on_value)
        self.model.reset.connect(self._sync_header)
        self.model.validated.connect(self._show_validation)
        self.source_picker().scanned.connect(self._folder_scanned)
        self._sync_header()
        self._show_validation()
        workers.submit(warm_up, on_result=self._fill_devices, owner=self)

    # ---- finding a field -----------------------------------------------------------------
    def _search_scroll(self, text: str) -> None:
        """A search starts at the top of the form; clearing it returns to where the form was."""
        bar = self.scroll.verticalScrollBar()
        if text.strip():
            if self._scroll_before_search is None:
                self._scroll_before_search = bar.value()
            bar.setValue(0)
        elif self._scroll_before_search is not None:
            self.form.layout().activate()
            bar.setValue(self._scroll_before_search)
            self._scroll_before_search = None

    def focus_field(self, path: str) -> None:
        """Unfold the field's section, scroll it into view and give it the keyboard (a search
        that hides the field, e.g. one a problem link points at, is cleared first)."""
        if self.form.filter.query and path not in self.form.matching_paths():
            self.search.edit.clear()
        self.form.focus_field(path)
        widget = self.form.editors.get(path) or self.form.custom_widgets.get(path)
        if widget is not None:
            self.scroll.ensureWidgetVisible(widget)

    # ---- header -------------------------------------------------------------------------
    def _sync_header(self) -> None:
        method = self.model.method
        idx = self.method_combo.findData(method)
        if idx < 0:
            idx = self.method_combo.add_unknown(method)
        self.method_combo.blockSignals(True)
        self.method_combo.setCurrentIndex(idx)
        self.method_combo.blockSignals(False)
        if self.method_card.name != method:
            self.method_card.show_method(method)
        if self.name_edit.text() != self.model.value("name"):
            self.name_edit.setText(self.model.value("name"))
        self._fill_presets()

    def _fill_presets(self) -> None:
        method = self.model.method
        self.preset_combo.blockSignals(True)
        self.preset_combo.clear()
        self.preset_combo.addItem("Choose a preset…", None)
        self.preset_combo.addItem("defaults", "")
        for name in list_presets():
            if preset_method(name) == method:
                self.preset_combo.addItem(name, name)
        self.preset_combo.setCurrentIndex(0)
        self.preset_combo.blockSignals(False)

    def _method_picked(self, _index: int) -> None:
        name = self.method_combo.currentData()
        if name is not None:  # never a family header
            self.model.set_value("method.name", name)

    def _preset_picked(self, index: int) -> None:
        name = self.preset_combo.itemData(index)
        if name is None:
            return
        self.apply_preset(name)

    def apply_preset(self, name: str) -> None:
        """Fill the form from a preset ('' = the defaults, keeping the current method)."""
        if name:
            self.model.apply_preset(name)
        else:
            method = self.model.method
            self.model.set_data({**DEFAULTS, "method": {**DEFAULTS["method"], "name": method}})
        idx = self.preset_combo.findData(name)
        if idx >= 0:
            self.preset_combo.setCurrentIndex(idx)  # show what the form was filled from
        self.message.emit(f"applied preset {name or 'defaults'}")

    def _on_value(self, path: str, _value) -> None:
        if path in ("method.name", "name"):
            self._sync_header()

    def _fill_devices(self, devices) -> None:
        remembered = settings.value("device", "")
        self.device_combo.clear()
        for label, device in devices:
            self.device_combo.addItem(label, device)
        choice = remembered if self.device_combo.findData(remembered) >= 0 else devices[min(1, len(devices) - 1)][1]
        self.device_combo.setCurrentIndex(self.device_combo.findData(choice))
        self.offer_gpus(process.gpu_count(devices))

    def offer_gpus(self, count: int) -> None:
        """With several GPUs, offer '1 GPU' or 'all ``count`` GPUs on this machine' next to Launch
        (hidden with 0 or 1)."""
        self.gpus_combo.blockSignals(True)
        self.gpus_combo.clear()
        if count > 1:
            self.gpus_combo.addItem("1 GPU", 1)
            self.gpus_combo.addItem(f"{count} GPUs on this machine", count)
        self.gpus_combo.blockSignals(False)
        self.gpus_combo.setVisible(count > 1)
        self._gpus_picked()

    def _gpus_picked(self, _index: int = 0) -> None:
        """Every GPU: the device picker does not apply (each process takes its own GPU)."""
        self.device_combo.setEnabled(self.processes() == 1)

    def processes(self) -> int:
        """Trainer processes Launch starts: 1, or one per GPU when 'N GPUs' is chosen."""
        return int(self.gpus_combo.currentData() or 1) if self.gpus_combo.count() else 1

    def source_picker(self) -> SourcePicker:
        """The data source picker inside the Data section."""
        return self.form.custom_widgets["data.source"]

    def data_problem(self, cfg) -> str:
        """Why ``cfg``'s data cannot be trained on ('' when it looks fine): the folder check the
        trainer would fail on, or a finished scan that found no readable image."""
        return check_source(cfg.data) or self.data_problem_of_scan(cfg.data.source)

    def _folder_scanned(self, report) -> None:
        """A finished scan that found no readable image makes the folder a data.source problem."""
        problem = self.data_problem_of_scan(self.model.value("data.source"))
        if problem:
            self.model.set_folder_problem(self.model.value("data.source"), problem)

    def data_problem_of_scan(self, source: str) -> str:
        """Why the last finished scan of ``source`` says it cannot be trained on ('' if fine)."""
        picker = self.source_picker()
        report = picker.report
        if report is not None and picker.report_source == source and report.images and not report.good:
            return (f"none of the {report.images} images in {report.root} can be read "
                    f"(e.g. {report.bad[0][0]}: {report.bad[0][1]}); check the files or pick another folder")
        return ""

    # ---- validation ---------------------------------------------------------------------
    def _show_validation(self) -> None:
        errors = self.model.errors
        self.launch_button.setEnabled(self.model.is_valid)
        self.queue_button.setEnabled(self.model.is_valid)
        self.sweep_button.setEnabled(self.model.is_valid)
        if not errors and self.model.pending:
            self.problems.setText(f"<span style='color:#57606a'>{html.escape(self.model.pending)}</span>")
            return
        if not errors:
            self.problems.setText("<span style='color:#2e7d32'>✓ config is valid</span>")
            return
        items = []
        for sentence in errors[:6]:
            head = sentence.split(" ", 1)[0]
            text = html.escape(sentence)
            items.append(f"• <a href='{head}'>{head}</a>{text[len(head):]}" if head in self.form.editors
                         or head in self.form.custom_widgets else f"• {text}")
        more = f"<br>… and {len(errors) - 6} more" if len(errors) > 6 else ""
        noun = "problem" if len(errors) == 1 else "problems"
        self.problems.setText(f"<span style='color:#c62828'><b>{len(errors)} {noun}</b> — fix to launch:"
                              f"<br>{'<br>'.join(items)}{more}</span>")

    # ---- files and launch ---------------------------------------------------------------
    def device(self) -> str:
        """The chosen runtime.device ('cuda' when every GPU trains: each process takes its own)."""
        if self.processes() > 1:
            return "cuda"
        return self.device_combo.currentData() or "cpu"

    def load_file(self, path) -> bool:
        """Load a config file into the form; a file the form cannot show is reported, not raised."""
        try:
            self.model.load(path)
        except ConfigError as exc:
            self.message.emit(f"could not open {path}: {exc}")
            return False
        settings.add_recent_config(path)
        self.message.emit(f"loaded {path}")
        return True

    def save_file(self, path) -> bool:
        """Save the form to ``path`` (.toml or .json)."""
        path = Path(path)
        if path.suffix not in (".toml", ".json"):
            path = path.with_suffix(".toml")
        try:
            self.model.save(path)
        except (ConfigError, OSError) as exc:
            self.message.emit(f"could not save {path}: {exc}")
            return False
        settings.add_recent_config(path)
        self.message.emit(f"saved {path}")
        return True

    def open_dialog(self) -> None:
        """Ask for a config file and load it."""
        start = str(self.model.source_path or settings.workspace())
        path, _ = QFileDialog.getOpenFileName(self, "Open experiment config", start, CONFIG_FILTER)
        if path:
            self.load_file(path)

    def save_dialog(self) -> None:
        """Ask for a file name and save the config."""
        start = str(self.model.source_path or settings.workspace() / "experiment.toml")
        path, _ = QFileDialog.getSaveFileName(self, "Save experiment config", start, CONFIG_FILTER)
        if path:
            self.save_file(path)

    def launch(self, signal=None) -> None:
        """Emit ``launchRequested`` (or ``signal``: queueRequested, sweepRequested) with the
        validated config and chosen device, or say why not (invalid fields, or a data folder the
        trainer could not use) without starting anything."""
        try:
            cfg = self.model.config()
        except ConfigError as exc:
            self.message.emit(f"cannot launch: {exc}")
            return
        problem = self.data_problem(cfg)
        if problem:
            self.source_picker().show_problem(problem)
            self.model.set_folder_problem(cfg.data.source, problem)   # Launch follows it
            self.message.emit(f"cannot launch: {problem}")
            return
        if needs_folder_check(cfg.data.source):
            self.model.set_folder_problem(cfg.data.source, "")   # fixed since the last check
        if self.processes() == 1:
            settings.set_value("device", self.device())
        cfg.runtime.device = self.device()
        (signal or self.launchRequested).emit(cfg, self.device())
