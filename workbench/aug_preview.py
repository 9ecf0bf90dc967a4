"""Augmentation preview: a grid of training images and their random views and, for a method that
declares them, what its network receives (``aug_inputs``), redrawn (debounced) whenever a data,
augmentation or method field changes. Data loading and view drawing run in a worker."""

from __future__ import annotations

import html
import json
import threading
import time

import numpy as np
from PySide6.QtCore import QRectF, QSize, Qt, QTimer
from PySide6.QtGui import QImage, QPainter
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QSizePolicy, QSpinBox, QVBoxLayout, QWidget

from backend.data.registry import source_kind

from . import workers
from .aug_inputs import InputRows, network_inputs, to_qimage
from .config_model import ConfigModel

DEBOUNCE_MS = 300
SAMPLE_PER_SHOWN = 4   # image-folder files decoded per image shown (the pool "New sample" draws from)
_cache_lock = threading.Lock()
_dataset_cache: dict = {}  # the last loaded train split: {"key": str, "dataset": ImageDataset}


def _dataset(data_cfg, seed: int, on_warning, ctx=None, pool: int = 0):
    """The train split for ``data_cfg`` (kept in memory while the data fields stay the same).
    With a worker ``ctx``, decoding an image folder reports progress and stops when cancelled.
    With ``pool``, a folder source decodes only a class-balanced sample of that many train files
    (``_folder_sample``), never the whole split."""
    from dataclasses import asdict

    from backend.data.sources import load_dataset

    kind = source_kind(data_cfg.source)
    pool = pool if kind is not None and kind.takes_path else 0
    key = json.dumps([asdict(data_cfg), seed, pool], sort_keys=True)
    with _cache_lock:
        if _dataset_cache.get("key") == key:
            return _dataset_cache["dataset"]
    hooks = {} if ctx is None else {"on_progress": ctx.progress, "cancelled": lambda: ctx.cancelled}
    if pool:
        dataset = _folder_sample(data_cfg, seed, pool, on_warning, hooks)
    else:
        dataset = load_dataset(data_cfg, "train", seed=seed, on_warning=on_warning, **hooks)
    with _cache_lock:
        _dataset_cache.update(key=key, dataset=dataset)
    return dataset


def _folder_sample(data_cfg, seed: int, pool: int, on_warning, hooks: dict):
    """``pool`` files of the train split (balanced over classes, inside ``train_limit``), decoded
    without touching the others or the on-disk cache; split ``'sample'``."""
    import torch

    from backend.data.registry import loader, parse_source
    from backend.data.sources import skipped_message
    from backend.data.types import ImageDataset

    ref = parse_source(data_cfg.source)
    limit = min(pool, data_cfg.train_limit) if data_cfg.train_limit > 0 else pool
    decoded = loader(ref).plan(data_cfg, ref, "train", seed, limit, warn=on_warning, **hooks).build()
    if decoded.skipped:
        on_warning(skipped_message(decoded.skipped, data_cfg.source, "train"))
    labels = None if decoded.labels is None else torch.from_numpy(decoded.labels)
    return ImageDataset(images=torch.from_numpy(decoded.images), labels=labels,
                        class_names=list(decoded.class_names), source=str(data_cfg.source), split="sample")


def pick_indices(labels, n: int, seed: int, size: int) -> np.ndarray:
    """``n`` image indices, one per class first (so the grid shows every class it can)."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(size)
    if labels is None:
        return order[:n]
    labels = np.asarray(labels)[order]
    _, first = np.unique(labels, return_index=True)
    first = order[np.sort(first)]
    rest = np.setdiff1d(order, first, assume_unique=True)
    return np.concatenate([rng.permutation(first), rest])[:n]


def render_views(ctx, cfg_dict: dict, n_images: int, seed: int) -> dict:
    """Worker: load the train split and draw views; rows of uint8 (n, H, W, 3) images."""
    import torch

    from backend.config import ExperimentConfig
    from backend.data.augment import ViewGenerator

    t0 = time.perf_counter()
    cfg = ExperimentConfig.from_dict(cfg_dict, validate=False)
    warnings: list[str] = []
    ctx.progress(-1, f"loading {cfg.data.source}…")
    data = _dataset(cfg.data, cfg.runtime.seed, warnings.append, ctx, pool=SAMPLE_PER_SHOWN * n_images)
    ctx.check()
    if len(data) == 0:
        raise ValueError(f"{cfg.data.source} has no training images")
    idx = pick_indices(None if data.labels is None else data.labels.numpy(), n_images, seed, len(data))
    images = data.images[torch.as_tensor(idx)]
    ctx.progress(-1, "drawing views…")
    gen = ViewGenerator(cfg.augment, cfg.data.image_size)
    with torch.no_grad():
        views, _ = gen.sample(images, torch.Generator().manual_seed(seed))
    ctx.check()

    def to_hwc(x) -> np.ndarray:
        if x.dtype != torch.uint8:
            x = (x.clamp(0, 1) * 255 + 0.5).to(torch.uint8)
        return np.ascontiguousarray(x.permute(0, 2, 3, 1).numpy())

    rows = [("original", to_hwc(images))]
    n_global = cfg.augment.num_global_crops
    for i, v in enumerate(views[:n_global][:4]):
        rows.append((f"view {i + 1}", to_hwc(v)))
    for i, v in enumerate(views[n_global:][:2]):
        rows.append((f"local {i + 1}", to_hwc(v)))
    names = [data.class_names[int(data.labels[i])] if data.labels is not None and data.class_names else ""
             for i in idx]
    ctx.progress(-1, f"drawing what {cfg.method.name}'s network receives…")
    inputs, problem = network_inputs(cfg, views, gen.normalize, seed + cfg.runtime.seed)
    ctx.check()
    if problem:
        warnings.append(problem)
    return {"rows": rows, "names": names, "inputs": inputs, "seconds": time.perf_counter() - t0,
            "warnings": warnings, "source": cfg.data.source, "size": len(data), "views": len(views),
            "sampled": data.split == "sample"}


class MosaicView(QWidget):
    """Paints images and their views in a grid scaled to fit, pixels kept sharp. Wide widgets get
    one row per view kind (original, view 1, ...); tall ones one row per image, so the cells stay
    as large as the panel allows. The method's network inputs (``inputs``), when there are any,
    follow as captioned rows in the same columns (always the wide layout then)."""

    HEADER_HEIGHT = 18
    MAX_LABEL_WIDTH = 130

    def __init__(self, parent=None):
        super().__init__(parent)
        self.rows: list[tuple[str, list[QImage]]] = []
        self.names: list[str] = []
        self.inputs = InputRows()
        self.setMinimumSize(200, 150)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)

    def set_rows(self, rows, names=(), inputs=()) -> None:
        """``rows``: [(label, uint8 array (n, H, W, 3))]; ``names``: one caption per image;
        ``inputs``: [(caption, uint8 array (n, H, W, 3), tags)] of the network inputs."""
        self.rows = [(label, [to_qimage(a) for a in arrays]) for label, arrays in rows]
        self.names = list(names)
        self.inputs = InputRows(inputs)
        self.setToolTip("\n".join(self.inputs.captions()))
        self.update()

    def label_width(self) -> int:
        """Width of the row captions: the longest one, capped."""
        if not self.rows:
            return 0
        metrics = self.fontMetrics()
        labels = [label for label, _ in self.rows] + self.names
        return min(self.MAX_LABEL_WIDTH, max(metrics.horizontalAdvance(t) for t in labels) + 8)

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt override
        return QSize(380, 520)

    def _layout(self) -> tuple[bool, int, int, float]:
        """(transposed, grid rows, grid columns, cell side) for the current size."""
        kinds = len(self.rows)
        n = max(len(images) for _, images in self.rows)
        w, h = self.width() - self.label_width() - 4, self.height() - 4
        fixed = self.inputs.fixed_height(self.fontMetrics())
        wide = max(1.0, min(w / n, (h - fixed) / (kinds + len(self.inputs))))
        tall = min(w / kinds, (h - self.HEADER_HEIGHT) / n)
        if tall > wide and not self.inputs:
            return True, n, kinds, tall
        return False, kinds, n, wide

    def cell_size(self) -> float:
        """Side of one cell in pixels for the current widget size."""
        return self._layout()[3] if self.rows else 0.0

    def paintEvent(self, _event):  # noqa: N802 - Qt override
        painter = QPainter(self)
        painter.fillRect(self.rect(), self.palette().window())
        if not self.rows:
            painter.end()
            return
        transposed, n_rows, n_cols, cell = self._layout()
        gap = max(2.0, cell * 0.05)
        full = max(img.width() for _, images in self.rows for img in images[:1])
        text = self.palette().windowText().color()
        painter.setPen(text)
        top = self.HEADER_HEIGHT + 2 if transposed else 2
        label_w = self.label_width()
        left = label_w + max(0.0, (self.width() - label_w - n_cols * cell) / 2)
        metrics = self.fontMetrics()
        right = Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
        centre = Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignBottom
        for r in range(n_rows):
            if transposed:
                label = self.names[r] if r < len(self.names) else ""
            else:
                label = self.rows[r][0]
            label = metrics.elidedText(label, Qt.TextElideMode.ElideRight, label_w - 6)
            painter.drawText(QRectF(left - label_w, top + r * cell, label_w - 6, cell - gap), right, label)
        if transposed:
            for c, (label, _) in enumerate(self.rows):
                label = metrics.elidedText(label, Qt.TextElideMode.ElideRight, int(cell - gap))
                painter.drawText(QRectF(left + c * cell, 0, cell - gap, self.HEADER_HEIGHT),
                                 centre, label)
        for k, (_, images) in enumerate(self.rows):
            for i, img in enumerate(images):
                r, c = (i, k) if transposed else (k, i)
                side = (cell - gap) * min(1.0, img.width() / full)
                offset = (cell - gap - side) / 2
                painter.drawImage(QRectF(left + c * cell + offset, top + r * cell + offset,
                                         side, side), img)
        if self.inputs:
            self.inputs.paint(painter, metrics, text_left=left - label_w + 4, left=left,
                              top=top + n_rows * cell, cell=cell, gap=gap, right=self.width() - 2)
        painter.end()


class AugPreview(QWidget):
    """The preview panel bound to a ``ConfigModel``."""

    def __init__(self, model: ConfigModel, parent=None):
        super().__init__(parent)
        self.model = model
        self.seed = 0
        self.task = None
        self._generation = 0
        self._allow_download = False
        self._last_key = None
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        bar = QHBoxLayout()
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.status.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.status.setStyleSheet("color: #57606a;")
        self.status.setTextFormat(Qt.TextFormat.RichText)  # every text put in is escaped (say())
        self.count = QSpinBox()
        self.count.setRange(2, 16)
        self.count.setValue(8)
        self.count.setToolTip("Images shown")
        self.resample_button = QPushButton("New sample")
        self.resample_button.setToolTip("Draw other images and other random views")
        self.load_button = QPushButton("Load data set")
        self.load_button.setToolTip("Torchvision data sets are downloaded on first use")
        self.load_button.hide()
        bar.addStretch(1)
        bar.addWidget(self.load_button)
        bar.addWidget(QLabel("Images"))
        bar.addWidget(self.count)
        bar.addWidget(self.resample_button)
        layout.addLayout(bar)
        layout.addWidget(self.status)
        self.mosaic = MosaicView()
        layout.addWidget(self.mosaic, 1)
        self.timer = QTimer(self)
        self.timer.setSingleShot(True)
        self.timer.setInterval(DEBOUNCE_MS)
        self.timer.timeout.connect(self.refresh)
        self.resample_button.clicked.connect(self.resample)
        self.load_button.clicked.connect(self._load_clicked)
        self.count.valueChanged.connect(lambda _v: self.schedule(force=True))
        model.valueChanged.connect(lambda path, _v: path.startswith(("data.", "augment.", "method.", "runtime.seed"))
                                   and self.schedule())
        model.reset.connect(self.schedule)
        # a problem fixed without a field edit (the folder check after Rescan) redraws too
        model.validated.connect(lambda: self._last_key is None and self.timer.start())
        self.schedule()

    def _key(self) -> str:
        data = self.model.data()
        return json.dumps([data["data"], data["augment"], data["method"], data["runtime"]["seed"],
                           self.count.value(), self.seed], sort_keys=True)

    def schedule(self, force: bool = False) -> None:
        """Redraw after the debounce delay (if the relevant fields changed)."""
        if force:
            self._last_key = None
        self.timer.start()

    def resample(self) -> None:
        """Other images, other views."""
        self.seed += 1
        self.refresh()

    def _load_clicked(self) -> None:
        self._allow_download = True
        self.load_button.hide()
        self.refresh()

    def refresh(self) -> None:
        """Start drawing now (cancels a draw in progress)."""
        self.timer.stop()
        key = self._key()
        if key == self._last_key:
            return
        source = self.model.value("data.source")
        kind = source_kind(source)
        if kind is not None and kind.downloads and not self._allow_download:
            self.say(f"{source}: press Load to preview (downloads on first use)")
            self.load_button.show()
            self._last_key = None  # what is shown is no longer the drawing of the last key
            return
        self.load_button.hide()
        bad = [e for p, errs in self.model.field_errors.items() if p.startswith(("data.", "augment."))
               for e in errs]
        if bad:
            self.say(f"fix first: {bad[0]}", colour="#c62828")
            self._last_key = None  # once fixed, the same key as before must be redrawn
            return
        self._last_key = key
        if self.task is not None:
            self.task.cancel()
        self._generation += 1
        gen = self._generation
        self.say("drawing…")
        self.task = workers.submit(render_views, self.model.data(), self.count.value(), self.seed,
                                   owner=self,
                                   on_progress=lambda _f, text: gen == self._generation and self.say(text),
                                   on_result=lambda r: self._show(gen, r),
                                   on_error=lambda msg: self._failed(gen, msg))

    def _show(self, gen: int, result: dict) -> None:
        if gen != self._generation:
            return
        self.mosaic.set_rows(result["rows"], result["names"], result.get("inputs", ()))
        noun = "images sampled" if result.get("sampled") else "images"
        text = (f"{result['source']} · {result['size']} {noun} · {result['views']} views per image"
                f" · {result['seconds'] * 1000:.0f} ms")
        self.say(text, warning=result["warnings"][0] if result["warnings"] else "")

    def _failed(self, gen: int, message: str) -> None:
        if gen != self._generation:
            return
        self._last_key = None
        self.say(f"preview failed: {message}", colour="#c62828")

    def say(self, text: str, *, colour: str = "", warning: str = "") -> None:
        """Show ``text`` (and an orange ``warning`` line) in the status line, escaped: error
        sentences hold '<' and paths may hold anything."""
        body = html.escape(text)
        if colour:
            body = f"<span style='color:{colour}'>{body}</span>"
        if warning:
            body += f"<br><span style='color:#ef6c00'>{html.escape(warning)}</span>"
        self.status.setText(body)
