"""The Inspect window of one run: a header (run, checkpoint, device, Export encoder…) over tabs for
the embedding view, attention maps, evaluation (kNN / linear probe) and augmentation pairs (the
views the run's own augmentation settings draw from training images)."""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QComboBox, QHBoxLayout, QLabel, QMainWindow, QPushButton, QSpinBox, QTabWidget,
                               QVBoxLayout, QWidget)

from .inspect_common import (MUTED_COLOUR, CheckpointCombo, InspectContext, TaskBar, TileGrid, default_device,
                             to_hwc)


def pairs_job(ctx, run_dir, count: int, seed: int, checkpoint):
    """(images uint8 (n, 3, S, S), views [(n, 3, s, s)], captions) of ``count`` training images."""
    from backend.inspect import augmentation_pairs, split_images

    ctx.progress(-1, "drawing views")
    rng = np.random.default_rng(seed)
    images_all, labels_all, names = split_images(run_dir, None, split="train", checkpoint=checkpoint)
    idx = np.sort(rng.choice(len(images_all), size=min(count, len(images_all)), replace=False))
    originals, views = augmentation_pairs(run_dir, idx, seed=seed, split="train", checkpoint=checkpoint)
    captions = [names[int(labels_all[i])] if labels_all is not None and names else f"#{i}" for i in idx]
    return originals, views, [f"{c} (#{i})" for c, i in zip(captions, idx)]


class AugmentationPairsView(QWidget):
    """Training images (rows) and the views the run's augmentations draw from them (columns)."""

    def __init__(self, context: InspectContext, parent=None):
        super().__init__(parent)
        self.context = context
        self.seed = 0
        bar = QHBoxLayout()
        self.count = QSpinBox()
        self.count.setRange(1, 16)
        self.count.setValue(6)
        self.count.setPrefix("images: ")
        self.sample_button = QPushButton("New sample")
        self.sample_button.setToolTip("Other images, other random views")
        note = QLabel("Views drawn with this run's augmentation settings (its config.json).")
        note.setStyleSheet(f"color: {MUTED_COLOUR};")
        bar.addWidget(note, 1)
        bar.addWidget(self.count)
        bar.addWidget(self.sample_button)
        self.taskbar = TaskBar()
        self.grid = TileGrid()
        self.grid.clear("Press New sample to draw augmented views of training images.")
        layout = QVBoxLayout(self)
        layout.addLayout(bar)
        layout.addWidget(self.taskbar)
        layout.addWidget(self.grid, 1)
        self.sample_button.clicked.connect(self.resample)
        self.shown = False

    def showEvent(self, event):  # noqa: N802 - Qt override
        super().showEvent(event)
        if not self.shown:
            self.shown = True
            self.refresh()

    def resample(self) -> None:
        self.seed += 1
        self.refresh()

    def refresh(self) -> None:
        """Draw views (worker)."""
        self.taskbar.submit(pairs_job, self.context.run_dir, self.count.value(), self.seed,
                            self.context.checkpoint, on_result=self._show, text="drawing views…")

    def _show(self, result) -> None:
        originals, views, captions = result
        n_views = len(views)
        tiles = []
        for i in range(originals.shape[0]):
            tiles.append((to_hwc(originals[i]), "original"))
            for v, view in enumerate(views):
                tiles.append((to_hwc(view[i]), f"view {v + 1}"))
        self.grid.set_tiles(tiles, columns=1 + n_views, row_labels=captions)
        self.taskbar.show_text(f"{originals.shape[0]} images × {n_views} views (seed {self.seed})")


class InspectWindow(QMainWindow):
    """Inspect one run. ``tabs`` holds ``embeddings``, ``attention``, ``evaluation`` and ``pairs``."""

    def __init__(self, run_dir, checkpoint=None, parent=None):
        super().__init__(parent)
        from .inspect_attention import AttentionView
        from .inspect_embeddings import EmbeddingView
        from .inspect_eval import EvaluationView

        if parent is not None:
            self.setWindowFlag(Qt.WindowType.Window, True)
        self.run_dir = Path(run_dir)
        self.context = InspectContext(run_dir, None, default_device(), self)
        checkpoints = self.context.checkpoints()
        self.context.checkpoint = Path(checkpoint) if checkpoint else (checkpoints[0] if checkpoints else None)
        cfg = self.context.config()
        self.setWindowTitle(f"Inspect — {self.run_dir.name}")
        self.resize(1400, 900)

        header = QWidget()
        header.setObjectName("runBar")
        bar = QHBoxLayout(header)
        bar.setContentsMargins(8, 5, 8, 5)
        title = QLabel(f"<b>{html.escape(self.run_dir.name)}</b>")
        info = QLabel(f"{cfg.method.name} · {cfg.model.backbone} · {cfg.data.source}" if cfg else "(no config)")
        info.setTextFormat(Qt.TextFormat.PlainText)
        info.setStyleSheet(f"color: {MUTED_COLOUR};")
        self.checkpoint = CheckpointCombo()
        self.checkpoint.fill(checkpoints, self.context.checkpoint)
        self.checkpoint.currentIndexChanged.connect(
            lambda _i: self.context.set_checkpoint(self.checkpoint.checkpoint()))
        self.device = QComboBox()
        from backend.devices import available_devices
        self.device.addItems(available_devices())
        self.device.setCurrentText(self.context.device)
        self.device.setToolTip("Where features and maps are computed")
        self.device.currentTextChanged.connect(self.context.set_device)
        self.export_button = QPushButton("Export encoder…")
        self.export_button.clicked.connect(self.export_dialog)
        self.export_button.setEnabled(bool(checkpoints))
        for w in (title, info):
            bar.addWidget(w)
        bar.addStretch(1)
        for w in (QLabel("Checkpoint"), self.checkpoint, QLabel("Device"), self.device, self.export_button):
            bar.addWidget(w)

        self.embeddings = EmbeddingView(self.context)
        self.attention = AttentionView(self.context)
        self.evaluation = EvaluationView(self.context)
        self.pairs = AugmentationPairsView(self.context)
        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)
        for widget, name in ((self.embeddings, "Embeddings"), (self.attention, "Attention"),
                             (self.evaluation, "Evaluation"), (self.pairs, "Augmentation pairs")):
            self.tabs.addTab(widget, name)
        central = QWidget()
        layout = QVBoxLayout(central)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(header)
        layout.addWidget(self.tabs, 1)
        self.setCentralWidget(central)
        if not checkpoints:
            self.statusBar().showMessage(f"{self.run_dir.name} has no checkpoint yet: train it first", 0)
        self.export = None

    def export_dialog(self):
        """Open the export dialog for the chosen checkpoint."""
        from .export_dialog import ExportDialog

        if self.export is None:
            self.export = ExportDialog(self.run_dir, self.context.checkpoint, self)
        self.export.show()
        self.export.raise_()
        return self.export

    def closeEvent(self, event):  # noqa: N802 - Qt override
        for view in (self.embeddings, self.attention, self.evaluation, self.pairs):
            view.taskbar.cancel(quiet=True)
        super().closeEvent(event)
