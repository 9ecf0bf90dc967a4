"""Pieces shared by the Inspect views: the run/checkpoint/device being inspected (a small model the
views observe), a progress bar with Cancel bound to one worker task, checkpoint pickers, a grid of
captioned image tiles, and image conversions (uint8 CHW tensors -> QImage)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtCore import QObject, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QImage, QPainter, QPen, QPixmap
from PySide6.QtWidgets import (QComboBox, QHBoxLayout, QLabel, QProgressBar, QPushButton, QSizePolicy,
                               QWidget)

from . import workers

ERROR_COLOUR = "#c62828"
MUTED_COLOUR = "#57606a"
NOTE_COLOUR = "#b45309"
# Categorical colours for up to 20 classes (tab20-like, the first ten distinct on white).
CLASS_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                 "#bcbd22", "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94",
                 "#f7b6d2", "#c7c7c7", "#dbdb8d", "#9edae5")


def class_colours(n: int) -> list[str]:
    """``n`` distinguishable colours: a categorical palette up to 20, a hue wheel beyond."""
    if n <= len(CLASS_COLOURS):
        return list(CLASS_COLOURS[:n])
    return [QColor.fromHsvF((i * 0.618034) % 1.0, 0.65, 0.85).name() for i in range(n)]


# ---- images ----------------------------------------------------------------------------------
def to_hwc(image) -> np.ndarray:
    """One image, uint8 or float [0, 1], (3, H, W) torch/numpy or (H, W, 3) -> uint8 (H, W, 3)."""
    a = image.detach().cpu().numpy() if hasattr(image, "detach") else np.asarray(image)
    if a.ndim == 3 and a.shape[0] == 3 and a.shape[-1] != 3:
        a = a.transpose(1, 2, 0)
    if a.dtype != np.uint8:
        a = (np.clip(a.astype(np.float32), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return np.ascontiguousarray(a)


def to_qimage(image) -> QImage:
    """An image (see :func:`to_hwc`) as a QImage that owns its pixels."""
    a = to_hwc(image)
    h, w, _ = a.shape
    return QImage(a.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()


def upscaled_pixmap(image, side: int) -> QPixmap:
    """A square pixmap of ``side`` px; small images are enlarged without smoothing (sharp pixels)."""
    return QPixmap.fromImage(to_qimage(image)).scaled(
        side, side, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.FastTransformation)


# ---- the inspected run -------------------------------------------------------------------------
class InspectContext(QObject):
    """What the Inspect views work on: a run directory, its checkpoint and the device.

    Views read it when they start work and listen to ``changed`` (checkpoint or device)."""

    changed = Signal()

    def __init__(self, run_dir, checkpoint=None, device: str = "cpu", parent=None):
        super().__init__(parent)
        self.run_dir = Path(run_dir)
        self.checkpoint: Path | None = Path(checkpoint) if checkpoint else None
        self.device = device

    def checkpoints(self) -> list[Path]:
        """The run's committed checkpoints (last.pt first)."""
        from backend.runs import list_checkpoints
        return list_checkpoints(self.run_dir)

    def set_checkpoint(self, path) -> None:
        path = Path(path) if path else None
        if path != self.checkpoint:
            self.checkpoint = path
            self.changed.emit()

    def set_device(self, device: str) -> None:
        if device != self.device:
            self.device = device
            self.changed.emit()

    def config(self):
        """The run's ExperimentConfig (None when config.json cannot be read)."""
        from backend.errors import WorkbenchError
        from backend.runs import read_run_config
        try:
            return read_run_config(self.run_dir)
        except (WorkbenchError, OSError):
            return None


def default_device() -> str:
    """The first CUDA device when there is one, else the CPU."""
    from backend.devices import available_devices
    devices = available_devices()
    return devices[1] if len(devices) > 1 else devices[0]


class CheckpointCombo(QComboBox):
    """Picks one of a run's checkpoints; item data is the Path."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.setToolTip("Checkpoint of the run")

    def fill(self, paths, current=None) -> None:
        """List ``paths`` and select ``current`` (or the first)."""
        self.blockSignals(True)
        self.clear()
        for path in paths:
            self.addItem(Path(path).name, Path(path))
        if not paths:
            self.addItem("(no checkpoint)", None)
        index = self.index_of(current) if current else 0
        self.setCurrentIndex(max(index, 0))
        self.blockSignals(False)

    def index_of(self, path) -> int:
        """The row holding ``path`` (-1 if none). ``findData`` compares Python objects by identity,
        so an equal but distinct Path would not be found."""
        path = Path(path)
        return next((i for i in range(self.count()) if self.itemData(i) == path), -1)

    def checkpoint(self) -> Path | None:
        return self.currentData()


# ---- one worker at a time, with progress and Cancel ----------------------------------------------
def backend_callbacks(ctx: workers.TaskContext, start: float = 0.0, end: float = 1.0):
    """(progress, cancelled) callables for a backend function, mapped into [start, end] of the task."""
    def progress(fraction: float, message: str = "") -> None:
        ctx.progress(start + max(0.0, min(1.0, fraction)) * (end - start), message)
    return progress, (lambda: ctx.cancelled)


class TaskBar(QWidget):
    """Status text, a progress bar and Cancel for the task a view runs (one at a time: starting
    another cancels the previous one). Errors are shown here as one red sentence, never a dialog."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.task: workers.Task | None = None
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.label = QLabel("")
        self.label.setTextFormat(Qt.TextFormat.PlainText)   # messages and errors may hold "<"
        self.label.setWordWrap(True)
        self.label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.bar = QProgressBar()
        self.bar.setRange(0, 1000)
        self.bar.setFixedWidth(220)
        self.bar.setTextVisible(False)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel)
        layout.addWidget(self.label, 1)
        layout.addWidget(self.bar)
        layout.addWidget(self.cancel_button)
        self._generation = 0   # bumped by hand_over(): a finished submit then leaves the bar alone
        self._set_busy(False)

    @property
    def busy(self) -> bool:
        return self.task is not None and not self.task.done

    def _set_busy(self, busy: bool) -> None:
        self.bar.setVisible(busy)
        self.cancel_button.setVisible(busy)

    def submit(self, fn, *args, on_result=None, text: str = "working…", **kwargs) -> workers.Task:
        """Run ``fn(ctx, *args, **kwargs)`` in a worker, showing its progress here."""
        self.cancel(quiet=True)
        self.show_text(text)
        self.bar.setRange(0, 1000)
        self.bar.setValue(0)
        self._set_busy(True)
        task, generation = None, self._generation

        def finished():
            if self.task is task and self._generation == generation:
                self._set_busy(False)

        task = workers.submit(fn, *args, owner=self, on_progress=self._progress,
                              on_result=on_result, on_error=self.show_error, on_finished=finished, **kwargs)
        if not task.done:
            self.task = task
        elif self._generation == generation:
            self._set_busy(False)
        return task

    def hand_over(self) -> None:
        """The running task's result started longer work (a trainer process) that drives this bar
        and its Cancel button from now on: the task's end must not hide them."""
        self.task = None
        self._generation += 1

    def _progress(self, fraction: float, text: str) -> None:
        if fraction < 0:
            self.bar.setRange(0, 0)
        else:
            self.bar.setRange(0, 1000)
            self.bar.setValue(int(1000 * min(fraction, 1.0)))
        if text:
            self.show_text(text)

    def cancel(self, quiet: bool = False) -> None:
        """Cancel the running task (its result is dropped)."""
        if self.busy:
            self.task.cancel()
            if not quiet:
                self.show_text("cancelled")
        self.task = None
        self._set_busy(False)

    def show_text(self, text: str) -> None:
        self.label.setStyleSheet(f"color: {MUTED_COLOUR};")
        self.label.setText(text)

    def show_error(self, text: str) -> None:
        self.label.setStyleSheet(f"color: {ERROR_COLOUR};")
        self.label.setText(text)

    def text(self) -> str:
        return self.label.text()


# ---- a grid of captioned images ------------------------------------------------------------------
class TileGrid(QWidget):
    """Paints images in a grid scaled to fit the widget (pixels kept sharp), each with a caption
    of up to two lines under it and optional row labels on the left. ``columns=None`` picks the
    column count that makes the tiles largest."""

    CAPTION_LINE = 14
    MAX_SIDE = 220

    def __init__(self, parent=None, caption_lines: int = 1):
        super().__init__(parent)
        self.caption_lines = caption_lines
        self.tiles: list = []          # [(QImage | None, caption, colour | None)]
        self.columns: int | None = None
        self.row_labels: list[str] = []
        self.empty_text = ""
        self.setMinimumSize(120, 90)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)

    def set_tiles(self, tiles, columns: int | None = None, row_labels=()) -> None:
        """``tiles``: [(image or None, caption[, colour])]; an image is anything :func:`to_qimage` takes."""
        self.tiles = [(None if t[0] is None else (t[0] if isinstance(t[0], QImage) else to_qimage(t[0])),
                       str(t[1]), t[2] if len(t) > 2 else None) for t in tiles]
        self.columns = columns
        self.row_labels = list(row_labels)
        self.update()

    def clear(self, text: str = "") -> None:
        self.tiles, self.row_labels, self.empty_text = [], [], text
        self.update()

    def captions(self) -> list[str]:
        return [c for _, c, _ in self.tiles]

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt override
        return QSize(400, 300)

    def _label_width(self) -> int:
        if not self.row_labels:
            return 0
        m = self.fontMetrics()
        return min(140, max(m.horizontalAdvance(t) for t in self.row_labels) + 10)

    GAP = 4.0

    def layout_cells(self) -> tuple[int, int, float]:
        """(rows, columns, cell side) for the current widget size."""
        n = max(1, len(self.tiles))
        w = self.width() - self._label_width() - 4
        h = self.height() - 4
        cap = self.CAPTION_LINE * self.caption_lines + 4
        best = (1, n, 0.0)
        choices = [self.columns] if self.columns else range(1, n + 1)
        for cols in choices:
            rows = -(-n // cols)
            side = min((w - self.GAP * (cols - 1)) / cols, (h - self.GAP * (rows - 1)) / rows - cap)
            if side > best[2]:
                best = (rows, cols, side)
        rows, cols, side = best
        return rows, cols, max(8.0, min(side, float(self.MAX_SIDE)))

    def paintEvent(self, _event):  # noqa: N802 - Qt override
        painter = QPainter(self)
        painter.fillRect(self.rect(), self.palette().base())
        text_colour = self.palette().windowText().color()
        if not self.tiles:
            painter.setPen(QColor(MUTED_COLOUR))
            painter.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap, self.empty_text)
            painter.end()
            return
        rows, cols, side = self.layout_cells()
        cap = self.CAPTION_LINE * self.caption_lines + 4
        gap = self.GAP
        label_w = self._label_width()
        grid_w = cols * side + (cols - 1) * gap
        left = label_w + max(2.0, (self.width() - label_w - grid_w) / 2)
        top = 2.0
        metrics = self.fontMetrics()
        painter.setPen(text_colour)
        for r in range(min(rows, len(self.row_labels))):
            painter.drawText(QRectF(left - label_w - 2, top + r * (side + cap + gap), label_w - 6, side),
                             Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter,
                             metrics.elidedText(self.row_labels[r], Qt.TextElideMode.ElideRight, label_w - 6))
        for i, (image, caption, colour) in enumerate(self.tiles):
            r, c = divmod(i, cols)
            x, y = left + c * (side + gap), top + r * (side + cap + gap)
            if image is not None:
                painter.drawImage(QRectF(x, y, side, side), image)
                if colour:
                    painter.setPen(QPen(QColor(colour), 3))
                    painter.drawRect(QRectF(x + 1.5, y + 1.5, side - 3, side - 3))
            painter.setPen(text_colour)
            for k, line in enumerate(caption.split("\n")[: self.caption_lines]):
                line_top = y + side + 1 + k * self.CAPTION_LINE
                painter.drawText(QRectF(x - gap / 2, line_top, side + gap, self.CAPTION_LINE),
                                 Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop,
                                 metrics.elidedText(line, Qt.TextElideMode.ElideRight, int(side + gap)))
        painter.end()
