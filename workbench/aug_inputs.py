"""The augmentation preview's second part: what the selected method's network receives (shuffled
tiles, the masked image, the L channel, the patch grid...), a captioned row per input kind.

The inputs come from ``backend.methods.preview_inputs`` (the method's own module builds them with
the ops of its training step); methods that declare none show only the crops. Drawing runs in the
preview's worker (:func:`network_inputs`); :class:`InputRows` only paints, in the preview's mosaic
under the crops, the images in the crops' columns."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QImage


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


class InputRows:
    """The network-input rows the preview's mosaic paints under the crops: per input kind, its
    caption across the width, the images in the crops' columns (each scaled to the cell, pixels
    kept sharp), and each image's tag below when the method gives one (a permutation index, a
    neighbour's position)."""

    def __init__(self, rows=()):
        """``rows``: [(caption, uint8 array (n, H, W, 3), tags)]."""
        self.rows = [(caption, [to_qimage(a) for a in arrays], list(tags)) for caption, arrays, tags in rows]

    def __len__(self) -> int:
        return len(self.rows)

    def captions(self) -> list[str]:
        """The row captions, top to bottom."""
        return [caption for caption, _, _ in self.rows]

    def images(self, index: int) -> list[QImage]:
        """The images of row ``index``."""
        return self.rows[index][1]

    def tags(self, index: int) -> list[str]:
        """The tags of row ``index`` ([] when it has none)."""
        return self.rows[index][2]

    @staticmethod
    def bands(metrics) -> tuple[int, int]:
        """(caption band, tag band) heights in pixels for the font ``metrics``."""
        return metrics.height() + 4, metrics.height() + 2

    def fixed_height(self, metrics) -> int:
        """Height of every caption and tag band together (the cells come on top)."""
        caption, tag = self.bands(metrics)
        return sum(caption + (tag if tags else 0) for _, _, tags in self.rows)

    def paint(self, painter, metrics, *, text_left: float, left: float, top: float, cell: float,
              gap: float, right: float) -> None:
        """Paint the rows from ``top`` down; captions start at ``text_left`` and end by
        ``right``, the images' columns at ``left`` (``cell`` apart)."""
        caption_h, tag_h = self.bands(metrics)
        left_mid = Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignBottom
        centre = Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop
        side = cell - gap
        for caption, images, tags in self.rows:
            text = metrics.elidedText(caption, Qt.TextElideMode.ElideRight, int(right - text_left))
            painter.drawText(QRectF(text_left, top, right - text_left, caption_h - 2), left_mid, text)
            top += caption_h
            for i, img in enumerate(images):
                aspect = img.height() / max(1, img.width())
                w, h = (side, side * aspect) if aspect <= 1 else (side / aspect, side)
                painter.drawImage(QRectF(left + i * cell + (side - w) / 2, top + (side - h) / 2, w, h), img)
            top += cell
            for i, tag in enumerate(tags[:len(images)]):
                tag = metrics.elidedText(tag, Qt.TextElideMode.ElideRight, int(cell))
                painter.drawText(QRectF(left + i * cell - gap / 2, top - gap, cell, tag_h), centre, tag)
            if tags:
                top += tag_h
