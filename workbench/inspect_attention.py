"""The attention view: where the encoder looks. For a ViT checkpoint, the last block's CLS-to-patch
attention of every head and their mean, overlaid on the image, and the threshold mask that keeps
a chosen fraction of the attention mass (DINO's figure). For a CNN checkpoint the backend returns
feature-norm maps with a note saying so, which is shown above the maps.

Images come from the run's data split (pick an index, Next, Random) or from any file the user
opens. The maps are computed in a worker; the overlays and masks are drawn on the GUI thread from
the small per-patch grids (instant when the sliders move).
"""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QComboBox, QFileDialog, QHBoxLayout, QLabel, QPushButton, QSlider, QSpinBox,
                               QVBoxLayout, QWidget)

from .inspect_common import MUTED_COLOUR, NOTE_COLOUR, InspectContext, TaskBar, TileGrid, to_hwc

COLORMAP = "inferno"
IMAGE_FILTER = "Images (*.png *.jpg *.jpeg *.bmp *.gif *.webp *.tif *.tiff);;All files (*)"


# ---- worker jobs -----------------------------------------------------------------------------------
def split_job(ctx, run_dir, split: str, checkpoint):
    """(uint8 images (N, 3, S, S), labels or None, class names) of a run's split."""
    from backend.inspect import split_images

    ctx.progress(-1, f"loading the {split} split")
    return split_images(run_dir, None, split=split, checkpoint=checkpoint)


def attention_job(ctx, run_dir, checkpoint, device: str, upsample: str, image=None, path=None, size: int = 32):
    """The AttentionResult of one image (a uint8 (3, S, S) tensor, or the image file ``path``)."""
    from backend.inspect import attention_maps, load_image_file

    if path is not None:
        ctx.progress(-1, f"reading {Path(path).name}")
        image = load_image_file(path, size)
    ctx.progress(-1, "computing the maps")
    ctx.check()
    return attention_maps(run_dir, image, checkpoint, device=device, upsample=upsample)


# ---- drawing (numpy) ---------------------------------------------------------------------------------
def resize_nearest(grid: np.ndarray, size: int) -> np.ndarray:
    """(h, w) -> (size, size) by nearest neighbour (each patch a flat block)."""
    h, w = grid.shape
    rows = np.arange(size) * h // size
    cols = np.arange(size) * w // size
    return grid[rows][:, cols]


def overlay(image_hwc: np.ndarray, heat: np.ndarray, alpha: float) -> np.ndarray:
    """Alpha-blend a colormapped map (stretched to its own min..max) over an image; uint8 (H, W, 3)."""
    low, high = float(heat.min()), float(heat.max())
    scaled = (heat - low) / (high - low) if high > low else np.zeros_like(heat)
    rgb = pg.colormap.get(COLORMAP).map(scaled.reshape(-1), mode="byte")[:, :3].reshape(*heat.shape, 3)
    out = (1.0 - alpha) * image_hwc.astype(np.float32) + alpha * rgb.astype(np.float32)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def masked(image_hwc: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The image where ``mask`` (H, W) is true, a dark veil elsewhere."""
    out = image_hwc.astype(np.float32)
    out[~mask] = out[~mask] * 0.18 + 20.0
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


# ---- the view -------------------------------------------------------------------------------------------
class AttentionView(QWidget):
    """Controls, the note, and a grid: image + maps on the first row, threshold masks on the second."""

    def __init__(self, context: InspectContext, parent=None):
        super().__init__(parent)
        self.context = context
        self.images = None          # the split's uint8 images once loaded
        self.labels = None
        self.class_names: list[str] = []
        self.loaded_split = ""
        self.result = None          # backend.inspect.AttentionResult of the shown image
        self.source = ""            # what the shown image is ("test #3 · star", a file name)
        self.coverage = 0.0         # fraction of patches the mean map's mask keeps
        self._pending = None        # what to show once the split is loaded
        self._last = None           # (source, job kwargs) of the shown image, to redo it

        top = QHBoxLayout()
        self.split = QComboBox()
        self.split.addItems(["test", "train"])
        self.index = QSpinBox()
        self.index.setRange(0, 0)
        self.index.setPrefix("#")
        self.index.setToolTip("Image index in the split")
        self.show_button = QPushButton("Show")
        self.prev_button = QPushButton("◀")
        self.prev_button.setMaximumWidth(36)
        self.prev_button.setToolTip("Previous image")
        self.next_button = QPushButton("Next ▶")
        self.random_button = QPushButton("Random")
        self.open_button = QPushButton("Open image…")
        self.open_button.setToolTip("Any image file: centre square, resized to the run's image size")
        self.upsample = QComboBox()
        self.upsample.addItems(["nearest", "bilinear"])
        self.upsample.setToolTip("Patch grid to pixels: nearest shows the true resolution, bilinear is smoother")
        for w in (QLabel("Split"), self.split, self.index, self.show_button, self.prev_button, self.next_button,
                  self.random_button, self.open_button, QLabel("Upsampling"), self.upsample):
            top.addWidget(w)
        top.addStretch(1)

        sliders = QHBoxLayout()
        self.mass = QSlider(Qt.Orientation.Horizontal)
        self.mass.setRange(5, 100)
        self.mass.setSingleStep(5)
        self.mass.setPageStep(10)
        self.mass.setValue(60)
        self.mass.setToolTip("The mask keeps the smallest set of patches holding this fraction of the attention")
        self.mass_label = QLabel()
        self.opacity = QSlider(Qt.Orientation.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.setValue(55)
        self.opacity.setToolTip("Opacity of the map over the image")
        sliders.addWidget(QLabel("Mask keeps"))
        sliders.addWidget(self.mass, 2)
        sliders.addWidget(self.mass_label)
        sliders.addSpacing(20)
        sliders.addWidget(QLabel("Overlay opacity"))
        sliders.addWidget(self.opacity, 1)

        self.note = QLabel("")
        self.note.setWordWrap(True)
        self.coverage_label = QLabel("")
        self.coverage_label.setStyleSheet(f"color: {MUTED_COLOUR};")
        self.taskbar = TaskBar()
        self.grid = TileGrid()
        self.grid.clear("Press Show (or Next) to see where the encoder looks in a data set image, "
                        "or open any image file.")
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addLayout(sliders)
        layout.addWidget(self.taskbar)
        layout.addWidget(self.note)
        layout.addWidget(self.grid, 1)
        layout.addWidget(self.coverage_label)

        self.show_button.clicked.connect(lambda: self.show_index(self.index.value()))
        self.next_button.clicked.connect(lambda: self.step(1))
        self.prev_button.clicked.connect(lambda: self.step(-1))
        self.random_button.clicked.connect(self.random_image)
        self.open_button.clicked.connect(self.open_dialog)
        self.split.currentTextChanged.connect(lambda _s: self._forget_split())
        self.mass.valueChanged.connect(lambda _v: self.render())
        self.opacity.valueChanged.connect(lambda _v: self.render())
        self.upsample.currentTextChanged.connect(lambda _m: self.recompute())
        context.changed.connect(self.recompute)
        self._update_mass_label()

    # ---- choosing the image ----
    def _forget_split(self) -> None:
        self.images, self.labels, self.loaded_split = None, None, ""

    def _with_split(self, then) -> None:
        """Call ``then()`` once the chosen split's images are loaded (loading them in a worker)."""
        split = self.split.currentText()
        if self.images is not None and self.loaded_split == split:
            then()
            return
        self._pending = then
        self.taskbar.submit(split_job, self.context.run_dir, split, self.context.checkpoint,
                            on_result=lambda r: self._split_loaded(split, r), text=f"loading the {split} split…")

    def _split_loaded(self, split: str, result) -> None:
        self.images, self.labels, self.class_names = result
        self.loaded_split = split
        self.index.setRange(0, max(0, len(self.images) - 1))
        pending, self._pending = self._pending, None
        if pending is not None:
            pending()

    def show_index(self, index: int) -> None:
        """Compute and show the maps of image ``index`` of the chosen split."""
        def go():
            i = int(np.clip(index, 0, len(self.images) - 1))
            self.index.setValue(i)
            label = ""
            if self.labels is not None and self.class_names:
                label = f" · {self.class_names[int(self.labels[i])]}"
            self._compute(f"{self.loaded_split} #{i}{label}", image=self.images[i])
        self._with_split(go)

    def step(self, delta: int) -> None:
        """The previous/next image of the split (wrapping around)."""
        def go():
            n = len(self.images)
            self.show_index((self.index.value() + delta) % n if self.result is not None else self.index.value())
        self._with_split(go)

    def random_image(self) -> None:
        self._with_split(lambda: self.show_index(int(np.random.default_rng().integers(len(self.images)))))

    def open_dialog(self) -> None:
        """Ask for an image file and show its maps."""
        path, _ = QFileDialog.getOpenFileName(self, "Open an image", str(Path.home()), IMAGE_FILTER)
        if path:
            self.open_image(path)

    def open_image(self, path) -> None:
        """Compute and show the maps of any image file."""
        cfg = self.context.config()
        size = int(cfg.data.image_size) if cfg is not None else 32
        self._compute(Path(path).name, path=str(path), size=size)

    def recompute(self) -> None:
        """Redo the shown image (another checkpoint, device or upsampling)."""
        if self._last is not None:
            source, kwargs = self._last
            self._compute(source, **kwargs)

    def _compute(self, source: str, **kwargs) -> None:
        if self.context.checkpoint is None:
            self.taskbar.show_error("this run has no checkpoint yet: train it first")
            return
        self._last = (source, kwargs)
        self.taskbar.submit(attention_job, self.context.run_dir, self.context.checkpoint, self.context.device,
                            self.upsample.currentText(), text=f"maps of {source}…",
                            on_result=lambda r: self._show(source, r), **kwargs)

    def _show(self, source: str, result) -> None:
        self.result, self.source = result, source
        colour = MUTED_COLOUR if result.kind == "attention" else NOTE_COLOUR
        prefix = "" if result.kind == "attention" else "<b>Not attention:</b> "
        self.note.setText(f"<span style='color:{colour}'>{prefix}{html.escape(result.note)}</span>")
        self.taskbar.show_text(f"{source} · {self.context.checkpoint.name}")
        self.render()

    # ---- drawing ----
    def _update_mass_label(self) -> None:
        self.mass_label.setText(f"{self.mass.value()} % of the attention mass")

    def render(self) -> None:
        """Draw overlays and masks of the shown result with the current sliders."""
        from backend.inspect import attention_threshold_mask

        self._update_mass_label()
        r = self.result
        if r is None:
            return
        mass, alpha = self.mass.value() / 100.0, self.opacity.value() / 100.0
        image = to_hwc(r.images[0])
        size = image.shape[0]
        grid = r.grid[0].numpy()                     # (heads, h, w), each sums to 1
        maps = r.per_head[0].numpy()                 # (heads, S, S)
        mean_grid = grid.mean(axis=0)
        attention = r.kind == "attention"
        names = [f"head {h}" for h in range(r.num_heads)] if attention else ["feature norm"]
        top = [(image, self.source)]
        bottom = [(None, "")]
        if attention and r.num_heads > 1:
            top.append((overlay(image, r.mean[0].numpy(), alpha), "mean of heads"))
            bottom.append(self._mask_tile(image, mean_grid, mass, attention_threshold_mask, "mean"))
        for h, name in enumerate(names):
            top.append((overlay(image, maps[h], alpha), name))
            bottom.append(self._mask_tile(image, grid[h], mass, attention_threshold_mask, name))
        mean_mask = attention_threshold_mask(mean_grid, mass).numpy()
        self.coverage = float(mean_mask.mean())
        kept, total = int(mean_mask.sum()), mean_mask.size
        what = "attention" if attention else "feature-norm mass"
        self.coverage_label.setText(
            f"The {'mean ' if attention and r.num_heads > 1 else ''}mask keeps {kept} of {total} patches "
            f"({100 * self.coverage:.0f} %) holding {100 * mass:.0f} % of the {what}; "
            f"{r.grid.shape[-2]}×{r.grid.shape[-1]} grid, {size} px image.")
        self.grid.set_tiles(top + bottom, columns=len(top), row_labels=["maps", f"mask {100 * mass:.0f} %"])

    @staticmethod
    def _mask_tile(image, grid, mass, make_mask, name):
        mask = make_mask(grid, mass).numpy()
        return masked(image, resize_nearest(mask, image.shape[0])), f"{name}: {100 * mask.mean():.0f} % of patches"
