"""The data source picker of the experiment editor: a kind (synthetic, image folder, CIFAR, STL)
and a folder path. Picking an image folder starts a scan in a worker (``backend.data.scan``:
listing, cheap file checks, verdicts cached by path, size and mtime) with a progress bar and a
Cancel/Rescan button; folder problems are shown under the picker in the trainer's words."""

from __future__ import annotations

import html
from pathlib import Path

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (QFileDialog, QHBoxLayout, QLabel, QLineEdit, QProgressBar,
                               QSizePolicy, QToolButton, QVBoxLayout, QWidget)

from backend.data.registry import SOURCES, source_kind

from . import workers
from .config_form import Combo
from .config_model import CHOOSE_FOLDER, ConfigModel

SCAN_DELAY_MS = 600  # a typed folder path is scanned once typing pauses this long


def scan_task(ctx, source: str, cache_dir: str = ""):
    """Worker: scan an image folder (``backend.data.scan.scan_folder``) with progress and cancel."""
    from backend.data.scan import scan_folder
    return scan_folder(source, cache_dir=cache_dir or None, on_progress=ctx.progress,
                       cancelled=lambda: ctx.cancelled)


class SourcePicker(QWidget):
    """Edits ``data.source``: a kind (synthetic, image folder, CIFAR, STL) and a folder path.
    An image folder is scanned off the GUI thread; ``scanned(ScanReport)`` when a scan finishes,
    ``report`` holds it (``report_source`` the spec it describes) and ``scan_error`` a folder problem."""

    scanned = Signal(object)

    def __init__(self, model: ConfigModel, parent=None):
        super().__init__(parent)
        self.model = model
        self.path = "data.source"
        self.task = None
        self.report = None
        self.report_source = ""
        self.scan_error = ""
        self._field_errors: list[str] = []
        self._generation = 0
        self._scan_spec = ""      # the source being scanned now
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        self.kind = Combo()
        self.kind.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        for source in SOURCES:
            self.kind.addItem(source.label, source.name)
            self.kind.setItemData(self.kind.count() - 1, source.help, Qt.ItemDataRole.ToolTipRole)
        self.kind.setToolTip("Data set: procedurally drawn shapes (no files), a folder of images "
                             "(one sub-folder per class, or train/ and test/), or a torchvision "
                             "download.<br><i>data.source</i>")
        layout.addWidget(self.kind)
        row = QHBoxLayout()
        row.setSpacing(4)
        self.folder = QLineEdit()
        self.folder.setPlaceholderText("folder with one sub-folder per class")
        self.browse = QToolButton()
        self.browse.setText("Browse…")
        row.addWidget(self.folder, 1)
        row.addWidget(self.browse)
        self.folder_row = QWidget()
        self.folder_row.setLayout(row)
        row.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.folder_row)
        self.error_label = QLabel()
        self.error_label.setTextFormat(Qt.TextFormat.PlainText)  # paths and sentences, never markup
        self.error_label.setWordWrap(True)
        self.error_label.setStyleSheet("color: #c62828; font-size: 11px;")
        self.error_label.hide()
        layout.addWidget(self.error_label)
        self._build_scan_row(layout)
        self.kind.currentIndexChanged.connect(self._edited)
        self.folder.textEdited.connect(self._edited)
        self.browse.clicked.connect(self.choose_folder)
        model.valueChanged.connect(lambda p, _v: p == self.path and self.refresh())
        model.reset.connect(self.refresh)
        self.refresh()

    def _build_scan_row(self, layout) -> None:
        self.scan_progress = QProgressBar()
        self.scan_progress.setRange(0, 1000)
        self.scan_progress.setMaximumHeight(14)
        self.scan_progress.setTextVisible(False)
        self.scan_button = QToolButton()
        self.scan_button.setText("Rescan")
        self.scan_button.setToolTip("Scan the folder again (unchanged files are not re-checked)")
        self.scan_button.clicked.connect(self._scan_button_clicked)
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.scan_progress, 1)
        row.addWidget(self.scan_button)
        self.scan_row = QWidget()
        self.scan_row.setLayout(row)
        self.scan_progress.hide()
        layout.addWidget(self.scan_row)
        self.scan_label = QLabel()
        self.scan_label.setTextFormat(Qt.TextFormat.PlainText)
        self.scan_label.setWordWrap(True)
        self.scan_label.setStyleSheet("color: #57606a; font-size: 11px;")
        self.scan_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        layout.addWidget(self.scan_label)
        self.scan_timer = QTimer(self)
        self.scan_timer.setSingleShot(True)
        self.scan_timer.setInterval(SCAN_DELAY_MS)
        self.scan_timer.timeout.connect(self.start_scan)
        self._show_scan_row()

    def takes_folder(self) -> bool:
        """Whether the chosen kind is written ``<kind>:<path>`` (an image folder)."""
        kind = source_kind(f"{self.kind.currentData()}:")
        return kind is not None and kind.takes_path

    def spec(self) -> str:
        """The source spec shown ('synthetic', 'imagefolder:/data/x', 'cifar10', ...)."""
        kind = self.kind.currentData()
        return f"{kind}:{self.folder.text().strip()}" if self.takes_folder() else kind

    def refresh(self) -> None:
        """Show the model's data.source."""
        spec = self.model.value(self.path)
        source = source_kind(spec)
        kind, folder = (source.name, spec.partition(":")[2]) if source is not None and source.takes_path else (spec, "")
        self.kind.blockSignals(True)
        idx = self.kind.findData(kind)
        self.kind.setCurrentIndex(idx if idx >= 0 else 0)
        self.kind.blockSignals(False)
        takes_folder = self.takes_folder()
        if takes_folder and self.folder.text() != folder:
            self.folder.setText(folder)
        self.folder_row.setVisible(takes_folder)
        self._show_scan_row()
        if takes_folder and folder and spec not in (self.report_source, self._scan_spec):
            self.scan_timer.start()

    def set_errors(self, errors: list[str]) -> None:
        """Show validation sentences about data.source."""
        self._field_errors = list(errors)
        self._show_errors()

    def show_problem(self, sentence: str) -> None:
        """Show a folder problem (from a scan or the launch check) under the picker."""
        self.scan_error = sentence
        self._show_errors()

    def _show_errors(self) -> None:
        errors = list(dict.fromkeys(self._field_errors + ([self.scan_error] if self.scan_error else [])))
        prompt = errors == [CHOOSE_FOLDER]   # no folder yet: a prompt, not an error
        self.error_label.setStyleSheet(f"color: {'#57606a' if prompt else '#c62828'}; font-size: 11px;")
        ask = CHOOSE_FOLDER.partition(": ")[2]
        self.error_label.setText(ask[:1].upper() + ask[1:] if prompt else "\n".join(errors))
        self.error_label.setVisible(bool(errors))

    # ---- folder scan ----------------------------------------------------------------------
    def scanning(self) -> bool:
        """Whether a scan is running now."""
        return self.task is not None and not self.task.done

    def start_scan(self) -> None:
        """Scan the chosen image folder in a worker (a scan in progress is cancelled first)."""
        self.scan_timer.stop()
        spec = self.spec()
        if not self.takes_folder() or not self.folder.text().strip():
            return
        self.cancel_scan(quiet=True)
        if spec == self.model.value(self.path):
            self.model.recheck_source()   # the folder may have changed: Launch waits for a fresh check
        self._generation += 1
        gen = self._generation
        self._scan_spec = spec
        self.report, self.report_source, self.scan_error = None, "", ""
        self._show_errors()
        self.scan_progress.setRange(0, 0)
        self.scan_progress.show()
        self.scan_button.setText("Cancel")
        self.scan_button.setToolTip("Stop scanning (what was checked so far is remembered)")
        self.scan_label.setText("scanning…")
        self.task = workers.submit(scan_task, spec, self.model.value("data.cache_dir"), owner=self,
                                   on_progress=lambda f, t: self._scan_progress(gen, f, t),
                                   on_result=lambda r: self._scan_done(gen, spec, r),
                                   on_error=lambda m: self._scan_failed(gen, spec, m),
                                   on_finished=lambda: self._scan_finished(gen))

    def cancel_scan(self, quiet: bool = False) -> None:
        """Cancel the running scan (its partial verdicts stay cached)."""
        if not self.scanning():
            return
        self.task.cancel()
        self._generation += 1
        self._scan_idle()
        if not quiet:
            self.scan_label.setText("scan cancelled; press Rescan to continue it")

    def _scan_button_clicked(self) -> None:
        if self.scanning():
            self.cancel_scan()
        else:
            self.start_scan()

    def _scan_progress(self, gen: int, fraction: float, text: str) -> None:
        if gen != self._generation:
            return
        if fraction < 0:
            self.scan_progress.setRange(0, 0)
        else:
            self.scan_progress.setRange(0, 1000)
            self.scan_progress.setValue(int(1000 * min(1.0, fraction)))
        self.scan_label.setText(text)

    def _scan_done(self, gen: int, spec: str, report) -> None:
        if gen != self._generation:
            return
        self.report, self.report_source = report, spec
        self.scan_label.setText(report.summary())
        bad = "<br>".join(html.escape(f"{rel}: {why}") for rel, why in report.bad[:40])
        self.scan_label.setToolTip(f"<p style='white-space:pre'>{bad}</p>" if bad else "")
        self.scanned.emit(report)

    def _scan_failed(self, gen: int, spec: str, message: str) -> None:
        if gen != self._generation:
            return
        self.report_source = spec
        self.scan_label.setText("")
        self.show_problem(message)

    def _scan_finished(self, gen: int) -> None:
        if gen == self._generation:
            self._scan_idle()

    def _scan_idle(self) -> None:
        self._scan_spec = ""
        self.scan_progress.hide()
        self.scan_button.setText("Rescan")
        self.scan_button.setToolTip("Scan the folder again (unchanged files are not re-checked)")

    def _show_scan_row(self) -> None:
        folder = self.takes_folder()
        self.scan_row.setVisible(folder)
        self.scan_label.setVisible(folder)
        if not folder:
            self.scan_timer.stop()
            self.cancel_scan(quiet=True)
            if self.scan_error:
                self.scan_error = ""
                self._show_errors()

    def choose_folder(self) -> None:
        """Pick the image folder with a dialog."""
        folder = QFileDialog.getExistingDirectory(self, "Image folder", self.folder.text() or str(Path.home()))
        if folder:
            self.set_folder(folder)

    def set_folder(self, folder) -> None:
        """Use ``folder`` as the image folder and scan it now."""
        self.kind.blockSignals(True)
        self.kind.setCurrentIndex(next(i for i in range(self.kind.count())
                                       if source_kind(f"{self.kind.itemData(i)}:") is not None))
        self.kind.blockSignals(False)
        self.folder.setText(str(folder))
        self._edited()
        self.start_scan()

    def _edited(self, *_):
        self.folder_row.setVisible(self.takes_folder())
        self.model.set_value(self.path, self.spec())
        self._show_scan_row()
        if self.takes_folder() and self.spec() not in (self.report_source, self._scan_spec):
            self.scan_timer.start()
