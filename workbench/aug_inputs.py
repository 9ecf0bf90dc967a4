"""The augmentation preview's second part: what the selected method's network receives (shuffled
tiles, the masked image, the L channel, the patch grid...), a captioned row per input kind.

The inputs come from ``backend.methods.preview_inputs`` (the method's own module builds them with
the ops of its training step); methods that declare none show only the crops. Drawing runs in the
preview's worker (:func:`network_inputs`); :class:`InputsView` only paints."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QRectF, QSize, Qt
from PySide6.QtGui import QImage, QPainter
from PySide6.QtWidgets import QSizePolicy, QWidget


def _to_hwc(x) -> np.ndarray:
    """(N, 3, H, W) floats in [0, 1] -> contiguous uint8 (N, H, W, 3)."""
    import torch

    x = (x.detach().float().clamp(0, 1) * 255 + 0.5).to(torch.uint8)
    return np.ascontiguousarray(x.permute(0, 2, 3, 1).cpu().numpy())


def network_inputs(cfg, views01: list, normalize, seed: int) -> tuple[list, str]:
    """Worker: ([(caption, uint8 (N, H, W, 3), tags)], warning) of what ``cfg.method``'s network
    receives for the preview's views (``views01`` in [0, 1]; ``normalize`` maps them to the
    trainer's normalised views). The method's random draws (tile jitter, permutations, masks)
    come from a CPU generator seeded by ``seed``. A method that cannot draw its inputs for this
    configuration gives no rows and a warning, never a failed preview."""
    import torch

    from backend.methods import has_preview_inputs, preview_inputs

    name = cfg.method.name
    try:
        if not has_preview_inputs(name):
            return [], ""
        views = [normalize(v) for v in views01]
        with torch.no_grad():
            entries = preview_inputs(name, views, cfg, torch.Generator().manual_seed(seed))
    except Exception as exc:  # noqa: BLE001 - shown as the preview's warning line
        return [], f"{name}: the network inputs cannot be drawn ({exc})"
    return [(caption, _to_hwc(images), list(tags)) for caption, images, tags in entries], ""


def to_qimage(array: np.ndarray) -> QImage:
    """An (H, W, 3) uint8 array as a QImage (copied, so the array may go away)."""
    h, w, _ = array.shape
    return QImage(array.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()


class InputsView(QWidget):
    """Paints one row per network-input kind: its caption across the full width, then the images
    in the order of the crops above (scaled to a common cell, pixels kept sharp), each with its
    tag below when the method gives one (a permutation index, a neighbour's position)."""

    MIN_CELL = 28
    GAP = 4

    def __init__(self, parent=None):
        super().__init__(parent)
        self.rows: list[tuple[str, list[QImage], list[str]]] = []
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setVisible(False)

    def set_rows(self, rows) -> None:
        """``rows``: [(caption, uint8 array (n, H, W, 3), tags)]; none hides the view."""
        self.rows = [(caption, [to_qimage(a) for a in arrays], list(tags)) for caption, arrays, tags in rows]
        self.setToolTip("\n".join(caption for caption, _, _ in self.rows))
        self.setVisible(bool(self.rows))
        self.updateGeometry()
        self.update()

    def captions(self) -> list[str]:
        """The row captions, top to bottom."""
        return [caption for caption, _, _ in self.rows]

    def _bands(self) -> tuple[int, int]:
        """(caption band, tag band) heights in pixels."""
        line = self.fontMetrics().height()
        return line + 4, line + 2

    def _fixed_height(self) -> int:
        caption, tag = self._bands()
        return sum(caption + (tag if tags else 0) for _, _, tags in self.rows)

    def cell_size(self) -> float:
        """Side of one image cell in pixels for the current widget size."""
        if not self.rows:
            return 0.0
        n = max(len(images) for _, images, _ in self.rows)
        width = (self.width() - 4) / max(n, 1)
        height = (self.height() - 4 - self._fixed_height()) / len(self.rows)
        return max(0.0, min(width, height))

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt override
        return QSize(380, self._fixed_height() + 64 * max(1, len(self.rows)))

    def minimumSizeHint(self) -> QSize:  # noqa: N802 - Qt override
        return QSize(200, self._fixed_height() + self.MIN_CELL * len(self.rows))

    def paintEvent(self, _event):  # noqa: N802 - Qt override
        painter = QPainter(self)
        painter.fillRect(self.rect(), self.palette().window())
        if not self.rows:
            painter.end()
            return
        caption_h, tag_h = self._bands()
        cell = self.cell_size()
        gap = min(self.GAP, max(1.0, cell * 0.06))
        n = max(len(images) for _, images, _ in self.rows)
        left = max(2.0, (self.width() - n * cell) / 2)
        metrics = self.fontMetrics()
        painter.setPen(self.palette().windowText().color())
        top = 2.0
        left_mid = Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter
        centre = Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop
        for caption, images, tags in self.rows:
            text = metrics.elidedText(caption, Qt.TextElideMode.ElideRight, int(self.width() - left - 2))
            painter.drawText(QRectF(left, top, self.width() - left - 2, caption_h), left_mid, text)
            top += caption_h
            for i, img in enumerate(images):
                side = cell - gap
                aspect = img.height() / max(1, img.width())
                w, h = (side, side * aspect) if aspect <= 1 else (side / aspect, side)
                painter.drawImage(QRectF(left + i * cell + (side - w) / 2, top + (side - h) / 2, w, h), img)
            top += cell
            if tags:
                for i, tag in enumerate(tags[:len(images)]):
                    tag = metrics.elidedText(tag, Qt.TextElideMode.ElideRight, int(cell))
                    painter.drawText(QRectF(left + i * cell - gap / 2, top - gap, cell, tag_h), centre, tag)
                top += tag_h
        painter.end()
