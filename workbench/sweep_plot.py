"""The sweep view's picture: a heatmap of a one- or two-field grid (one cell per run, colour = its
final kNN or linear probe, blank until the run has one, the value printed in the cell), or a
scatter of the first two fields for a sweep that is not a grid (random points)."""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF

from backend.sweep_results import SweepRow, is_grid, knn_grid

from .plots import style_plot, theme_for

METRIC_LABELS = {"knn": "final kNN top-1", "linear_probe": "linear probe top-1"}


def value_text(value) -> str:
    """A swept value as an axis label (floats in short form)."""
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def _number(value, fallback: float) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else fallback


class SweepPlot(pg.PlotWidget):
    """``show_rows(rows, fields, metric)`` draws what fits: ``mode`` is then ``heatmap``,
    ``scatter`` or ``none`` (more than two fields: the table says it all)."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.mode = "none"
        self.matrix = np.zeros((0, 0))
        self.cmap = pg.colormap.get("viridis")
        self.image = pg.ImageItem(axisOrder="row-major")
        self.image.setColorMap(self.cmap)
        self.addItem(self.image)
        self.scatter = pg.ScatterPlotItem(size=14, pen=pg.mkPen("#333333"))
        self.addItem(self.scatter)
        self.bar = pg.ColorBarItem(colorMap=self.cmap, interactive=False, width=14, label=METRIC_LABELS["knn"])
        self.bar.setImageItem(self.image, insert_in=self.getPlotItem())
        self.labels: list[pg.TextItem] = []
        self.getPlotItem().setMenuEnabled(False)
        self.setMouseEnabled(x=False, y=False)

    def _clear(self) -> None:
        for item in self.labels:
            self.removeItem(item)
        self.labels = []
        self.image.clear()
        self.scatter.clear()
        self.matrix = np.zeros((0, 0))
        for axis in ("bottom", "left"):
            self.getAxis(axis).setTicks(None)

    def _levels(self, values) -> tuple[float, float]:
        finite = [v for v in values if v is not None and math.isfinite(v)]
        if not finite:
            return 0.0, 1.0
        lo, hi = min(finite), max(finite)
        return (lo - 0.01, hi + 0.01) if hi - lo < 1e-6 else (lo, hi)

    def show_rows(self, rows: list[SweepRow], fields: list[str], metric: str = "knn") -> str:
        """Draw the sweep; returns the mode used."""
        self._clear()
        theme = theme_for(self)
        self.theme = theme
        self.setBackground(theme.background)
        self.bar.getAxis("left").setLabel(METRIC_LABELS[metric], color=theme.foreground)
        self.bar.getAxis("right").setTextPen(pg.mkPen(theme.foreground))
        if not rows or not fields or len(fields) > 2:
            self.mode = "none"
        elif is_grid(rows, fields):
            self._heatmap(rows, fields, metric)
            self.mode = "heatmap"
        else:
            self._scatter(rows, fields, metric)
            self.mode = "scatter"
        self.setVisible(self.mode != "none")
        return self.mode

    def _heatmap(self, rows, fields, metric) -> None:
        x_field, y_field = fields[-1], (fields[0] if len(fields) == 2 else None)
        xs, ys, matrix = knn_grid(rows, x_field, y_field, metric)
        self.matrix = np.array(matrix, dtype=float)
        levels = self._levels(self.matrix.ravel().tolist())
        self.image.setImage(self.matrix, autoLevels=False, levels=levels)
        self.image.setRect(QRectF(-0.5, -0.5, len(xs), len(ys)))
        self.bar.setLevels(levels)
        self.getAxis("bottom").setTicks([[(i, value_text(x)) for i, x in enumerate(xs)]])
        self.getAxis("left").setTicks([[(j, value_text(y)) for j, y in enumerate(ys)]])
        style_plot(self.getPlotItem(), f"{METRIC_LABELS[metric]} per run", x_field, y_field or "", self.theme)
        mid = (levels[0] + levels[1]) / 2
        for j in range(len(ys)):
            for i in range(len(xs)):
                value = self.matrix[j, i]
                text = "—" if not math.isfinite(value) else f"{value:.3f}"
                colour = self.theme.muted if not math.isfinite(value) else ("#222222" if value > mid else "#ffffff")
                label = pg.TextItem(text, color=colour, anchor=(0.5, 0.5))
                label.setPos(i, j)
                self.addItem(label)
                self.labels.append(label)
        self.getPlotItem().setRange(xRange=(-0.5, len(xs) - 0.5), yRange=(-0.5, len(ys) - 0.5), padding=0.02)

    def _scatter(self, rows, fields, metric) -> None:
        x_field, y_field = fields[0], (fields[1] if len(fields) == 2 else None)
        values = [getattr(r, metric) for r in rows]
        levels = self._levels(values)
        self.bar.setLevels(levels)
        spots = []
        for n, (row, value) in enumerate(zip(rows, values)):
            x = _number(row.point.get(x_field), n)
            y = _number(row.point.get(y_field), 0.0) if y_field else 0.0
            if value is None or not math.isfinite(value):
                brush = pg.mkBrush(0, 0, 0, 0)  # nothing yet: an empty circle
            else:
                brush = pg.mkBrush(self.cmap.map((value - levels[0]) / (levels[1] - levels[0]), mode="qcolor"))
            spots.append({"pos": (x, y), "brush": brush, "data": str(row.run_dir)})
        self.scatter.setData(spots)
        style_plot(self.getPlotItem(), f"{METRIC_LABELS[metric]} per run", x_field, y_field or "", self.theme)
        self.getPlotItem().enableAutoRange()
