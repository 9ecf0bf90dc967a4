"""Plots people can take away: PNG / SVG / CSV export and per-axis log scale for any dashboard plot.

``PlotTools(plot, names)`` gives one ``pyqtgraph`` plot a right-click menu ("Export PNG / SVG /
CSV...", "Log scale x / y"). PNG (at twice the screen size) and SVG (Qt's ``QSvgGenerator``) render
the plot's part of the scene as shown (pyqtgraph's SVGExporter fails on the path data this Qt
writes, and its ImageExporter rescales fonts and clips); when the plot shows
named curves (compared runs) the exported picture carries a legend in a row below the plot, so it
never covers the curves. CSV holds the plotted data: one (x, y) column pair per curve, headed
with the curve's name.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Callable

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, QSize
from PySide6.QtGui import QColor, QImage, QPainter
from PySide6.QtSvg import QSvgGenerator
from PySide6.QtWidgets import QFileDialog, QMenu, QWidget

FORMATS = {"png": "PNG image (*.png)", "svg": "SVG drawing (*.svg)", "csv": "CSV data (*.csv)"}


def curve_data(plot: pg.PlotItem, items=None) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, x, y) of every curve or scatter with data in ``plot`` (or of ``items``; the data as
    given, not the log-transformed or downsampled points drawn)."""
    out = []
    items = plot.listDataItems() if items is None else list(items)
    if any(isinstance(i, pg.PlotDataItem) for i in items):  # scatters then only mark points of a curve
        items = [i for i in items if isinstance(i, pg.PlotDataItem)]
    for i, item in enumerate(items):
        x, y = _raw_data(item)
        if x is None or not len(x):
            continue
        name = item.name() if hasattr(item, "name") and item.name() else f"curve {i + 1}"
        out.append((str(name), np.asarray(x, float), np.asarray(y, float)))
    return out


def named_curves(plot: pg.PlotItem) -> list[tuple[pg.PlotDataItem, str]]:
    """(curve, name) of a plot's named curves when there are several (what a legend keys), else []."""
    named = [(c, c.name()) for c in plot.listDataItems() if isinstance(c, pg.PlotDataItem) and c.name()]
    return named if len(named) > 1 else []


def _raw_data(item):
    if isinstance(item, pg.PlotDataItem):
        return item.xData, item.yData
    if isinstance(item, pg.ScatterPlotItem):
        return item.data["x"], item.data["y"]
    return None, None


def write_csv(plot: pg.PlotItem, path, x_label: str = "x", y_label: str = "y", items=None) -> Path:
    """The plotted data as CSV: columns '<name> <x_label>', '<name> <y_label>' per curve, rows
    padded with empty cells where a curve is shorter. ValueError when the plot has no data."""
    curves = curve_data(plot, items)
    if not curves:
        raise ValueError("the plot has no data to export")
    path = Path(path)
    rows = max(len(x) for _, x, _ in curves)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow([f"{name} {axis}" for name, _, _ in curves for axis in (x_label, y_label)])
        for r in range(rows):
            writer.writerow([_cell(col, r) for _, x, y in curves for col in (x, y)])
    return path


def _cell(values: np.ndarray, row: int) -> str:
    return repr(float(values[row])) if row < len(values) else ""


def write_png(item: pg.GraphicsObject, path, background: str = "#ffffff", scale: float = 2.0) -> Path:
    """Render ``item``'s rectangle of its scene into a PNG at ``scale`` times its screen size."""
    rect = item.sceneBoundingRect()
    w, h = max(1, int(rect.width() * scale)), max(1, int(rect.height() * scale))
    image = QImage(w, h, QImage.Format.Format_ARGB32)
    image.fill(QColor(background))
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    try:
        item.scene().render(painter, QRectF(0, 0, w, h), rect)
    finally:
        painter.end()
    if not image.save(str(path), "PNG"):
        raise OSError(f"could not write {path}")
    return Path(path)


def write_svg(item: pg.GraphicsObject, path, title: str = "") -> Path:
    """Render ``item``'s rectangle of its scene into an SVG file (vector curves and text)."""
    rect = item.sceneBoundingRect()
    w, h = max(1, int(rect.width())), max(1, int(rect.height()))
    generator = QSvgGenerator()
    generator.setFileName(str(path))
    generator.setSize(QSize(w, h))
    generator.setViewBox(QRectF(0, 0, w, h))
    generator.setTitle(title)
    painter = QPainter(generator)
    try:
        item.scene().render(painter, QRectF(0, 0, w, h), rect)
    finally:
        painter.end()
    return Path(path)


class _ExportLegend:
    """A legend added under a plot (a row of its layout) for the time of an export."""

    def __init__(self, plot: pg.PlotItem, names: list[tuple[pg.PlotDataItem, str]], theme):
        self.plot, self.legend = plot, None
        if not names:
            return
        # One column: a legend wider than the plot would widen the plot's layout column and clip it.
        self.legend = pg.LegendItem(labelTextColor=theme.foreground, labelTextSize="9pt", verSpacing=-6)
        for item, name in names:
            self.legend.addItem(item, name)
        plot.layout.addItem(self.legend, 5, 1)

    def close(self) -> None:
        if self.legend is not None:
            self.plot.layout.removeItem(self.legend)
            self.legend.setParentItem(None)
            if self.legend.scene() is not None:
                self.legend.scene().removeItem(self.legend)
            self.legend = None


class PlotTools:
    """Export and log-scale actions of one plot. ``legend_names()``: (curve, run name) pairs an
    exported picture should key (compared runs), or []; ``theme()``: the current plot theme;
    ``items()``: the data items the CSV holds (default: all of the plot's); ``parent``: the widget
    showing the plot, which owns the menu (a menu without one, its actions calling back into these
    tools, would keep them and what their callbacks reach alive after the widget is gone)."""

    def __init__(self, plot: pg.PlotItem, title: Callable[[], str], legend_names: Callable[[], list],
                 theme: Callable[[], object], x_label: str = "step", y_label: str = "value",
                 items: Callable[[], list] | None = None, parent: QWidget | None = None):
        self.plot, self.title, self.legend_names, self.theme = plot, title, legend_names, theme
        self.items = items
        self.x_label, self.y_label = x_label, y_label
        self.menu = QMenu(parent)
        for fmt in FORMATS:
            self.menu.addAction(f"Export {fmt.upper()}\u2026", lambda f=fmt: self.export_dialog(f))
        self.menu.addSeparator()
        self.log_actions = {}
        for axis in ("x", "y"):
            act = self.menu.addAction(f"Log scale {axis}")
            act.setCheckable(True)
            act.toggled.connect(lambda on, a=axis: self.set_log(**{a: on}))
            self.log_actions[axis] = act
        self.menu.addAction("View all", lambda: plot.getViewBox().autoRange())
        view = plot.getViewBox()
        view.setMenuEnabled(True)
        view.menu = self.menu  # our menu instead of pyqtgraph's (which fights the live x range)

    def set_log(self, x: bool | None = None, y: bool | None = None) -> None:
        """Log scale on the x and/or y axis (None leaves an axis as it is)."""
        self.plot.setLogMode(x=x, y=y)
        view = self.plot.getViewBox()  # ranges are in log units now (or linear again): refit
        if x is not None:
            view.enableAutoRange(x=True)  # a live plot's XFollower takes linear x back over
        if y is not None:
            view.enableAutoRange(y=True)
        view.updateAutoRange()
        for axis, on in (("x", x), ("y", y)):
            if on is not None and self.log_actions[axis].isChecked() != on:
                self.log_actions[axis].blockSignals(True)
                self.log_actions[axis].setChecked(on)
                self.log_actions[axis].blockSignals(False)

    def log_mode(self) -> tuple[bool, bool]:
        """(x, y) log scale as the plot has it."""
        mode = self.plot.ctrl.logXCheck.isChecked(), self.plot.ctrl.logYCheck.isChecked()
        return bool(mode[0]), bool(mode[1])

    def export(self, path, fmt: str | None = None) -> Path:
        """Write the plot to ``path`` as png, svg or csv (from the suffix unless ``fmt``)."""
        path = Path(path)
        fmt = (fmt or path.suffix.lstrip(".")).lower()
        if fmt not in FORMATS:
            raise ValueError(f"unknown export format {fmt!r}: use one of {', '.join(FORMATS)}")
        if path.suffix.lower() != "." + fmt:
            path = path.with_name(path.name + "." + fmt)
        if fmt == "csv":
            return write_csv(self.plot, path, self.x_label, self.y_label, self.items() if self.items else None)
        legend = _ExportLegend(self.plot, self.legend_names(), self.theme())
        try:
            self.plot.layout.activate()
            if fmt == "svg":
                write_svg(self.plot, path, self.title())
            else:
                write_png(self.plot, path, self.theme().background)
        finally:
            legend.close()
        return path

    def export_dialog(self, fmt: str) -> Path | None:
        """Ask for a file name, then export."""
        default = "".join(c if c.isalnum() or c in "-_" else "_" for c in self.title())[:60] or "plot"
        name, _ = QFileDialog.getSaveFileName(None, f"Export {fmt.upper()}", f"{default}.{fmt}", FORMATS[fmt])
        return self.export(name, fmt) if name else None
