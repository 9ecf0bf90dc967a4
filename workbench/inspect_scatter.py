"""Widgets of the embedding view: one scatter of 2-D projected embeddings (a single
ScatterPlotItem fed arrays, per-point brushes, nearest-point lookup in screen pixels for hover and
click, rings for the selected point and its neighbours), the hover card and the neighbour gallery."""

from __future__ import annotations

import html

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, Qt, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QSpinBox, QVBoxLayout, QWidget

from .inspect_common import MUTED_COLOUR, TileGrid, upscaled_pixmap
from .plot_export import PlotTools
from .plots import Theme


HOVER_RADIUS_PX = 8.0
_LIGHT = Theme(False, "#ffffff", "#30343b")  # the scatter is always drawn on white


# ---- one scatter --------------------------------------------------------------------------------
class ScatterPanel(QWidget):
    """One ScatterPlotItem fed arrays (per-point brushes by colour id), a highlight layer for the
    selected point and its neighbours, and nearest-point lookup in screen pixels for hover/click."""

    hovered = Signal(int)   # point index, -1 when the cursor left the points
    clicked = Signal(int)

    def __init__(self, parent=None):
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.plot_widget = pg.PlotWidget(background="w")
        self.plot = self.plot_widget.getPlotItem()
        self.plot.setMenuEnabled(False)
        self.plot.hideButtons()
        for side in ("left", "bottom"):  # projection axes have no meaning: a plain frame
            self.plot.hideAxis(side)
        self.plot.getViewBox().setBorder(pg.mkPen("#d0d7de"))
        self.plot.getViewBox().setDefaultPadding(0.04)
        self.plot.setTitle("", color="#30343b", size="9pt")
        self.scatter = pg.ScatterPlotItem(pxMode=True, pen=None, size=6)
        self.neighbour_marks = pg.ScatterPlotItem(pxMode=True, size=11, brush=None,
                                                  pen=pg.mkPen("#111111", width=1.5))
        self.query_mark = pg.ScatterPlotItem(pxMode=True, size=16, symbol="o", brush=None,
                                             pen=pg.mkPen("#d62728", width=2.5))
        self.hover_mark = pg.ScatterPlotItem(pxMode=True, size=12, brush=None, pen=pg.mkPen("#555555", width=1))
        for item in (self.scatter, self.neighbour_marks, self.query_mark, self.hover_mark):
            self.plot.addItem(item, ignoreBounds=item is not self.scatter)  # marks never move the view
        layout.addWidget(self.plot_widget)
        self.tools = PlotTools(self.plot, lambda: "embedding", lambda: [], lambda: _LIGHT, "x", "y",
                               items=lambda: [self.scatter], parent=self)  # right-click: export PNG / SVG / CSV
        self.xy = np.zeros((0, 2), np.float32)
        self._style: dict = {}
        self.hovered_index = -1
        scene = self.plot_widget.scene()
        scene.sigMouseMoved.connect(self.hover_at_scene)
        scene.sigMouseClicked.connect(lambda ev: ev.button() == Qt.MouseButton.LeftButton
                                      and self.click_at_scene(ev.scenePos()))

    @property
    def view_box(self) -> pg.ViewBox:
        return self.plot.getViewBox()

    def set_points(self, xy: np.ndarray, colour_ids: np.ndarray, colours: list[str], title: str) -> None:
        """Show ``xy`` (N, 2) with one brush per point from its colour id."""
        self.xy = np.ascontiguousarray(xy, dtype=np.float32)
        brushes = np.array([pg.mkBrush(c) for c in colours] or [pg.mkBrush("#1f77b4")], dtype=object)
        self._style = {"brush": brushes[np.asarray(colour_ids) % len(brushes)], "pen": None,
                       "size": 7 if len(xy) <= 500 else 5 if len(xy) <= 3000 else 4}
        self.scatter.setData(x=self.xy[:, 0], y=self.xy[:, 1], **self._style)
        self.plot.setTitle(html.escape(title))
        self.clear_marks()
        self._fit()

    def set_positions(self, xy: np.ndarray, title: str) -> None:
        """Move the points (another projection) keeping their colours and the marks' indices."""
        self.xy = np.ascontiguousarray(xy, dtype=np.float32)
        self.scatter.setData(x=self.xy[:, 0], y=self.xy[:, 1], **self._style)  # setData resets brushes
        self.plot.setTitle(html.escape(title))
        self._fit()
        self._refresh_marks()

    def _fit(self) -> None:
        """Show all points, and keep fitting them when the panel is resized (until the user zooms)."""
        self.view_box.enableAutoRange(enable=True)
        self.view_box.updateAutoRange()

    def clear_marks(self) -> None:
        self._marks = ([], -1)
        for item in (self.neighbour_marks, self.query_mark, self.hover_mark):
            item.clear()

    def mark(self, query: int, neighbours=()) -> None:
        """Ring the query point and its neighbours."""
        self._marks = (list(neighbours), int(query))
        self._refresh_marks()

    def _refresh_marks(self) -> None:
        neighbours, query = getattr(self, "_marks", ([], -1))
        n = len(self.xy)
        idx = [i for i in neighbours if 0 <= i < n and i != query]
        self.neighbour_marks.setData(pos=self.xy[idx] if idx else np.zeros((0, 2)))
        self.query_mark.setData(pos=self.xy[[query]] if 0 <= query < n else np.zeros((0, 2)))

    def scene_pos_of(self, index: int) -> QPointF:
        """Scene position of point ``index`` (for tests and tooltips)."""
        x, y = self.xy[index]
        return self.view_box.mapViewToScene(QPointF(float(x), float(y)))

    def point_at_scene(self, scene_pos) -> int:
        """The point nearest to ``scene_pos`` within HOVER_RADIUS_PX screen pixels, else -1."""
        if not len(self.xy) or not self.view_box.sceneBoundingRect().contains(scene_pos):
            return -1
        p = self.view_box.mapSceneToView(scene_pos)
        pw, ph = self.view_box.viewPixelSize()
        if not (pw > 0 and ph > 0):
            return -1
        d2 = ((self.xy[:, 0] - p.x()) / pw) ** 2 + ((self.xy[:, 1] - p.y()) / ph) ** 2
        i = int(np.argmin(d2))
        return i if d2[i] <= HOVER_RADIUS_PX ** 2 else -1

    def hover_at_scene(self, scene_pos) -> int:
        """Handle the cursor at ``scene_pos``: mark and report the point under it."""
        i = self.point_at_scene(scene_pos)
        if i != self.hovered_index:
            self.hovered_index = i
            self.hover_mark.setData(pos=self.xy[[i]] if i >= 0 else np.zeros((0, 2)))
            self.hovered.emit(i)
        return i

    def click_at_scene(self, scene_pos) -> int:
        """Handle a click at ``scene_pos``: report the point under it (if any)."""
        i = self.point_at_scene(scene_pos)
        if i >= 0:
            self.clicked.emit(i)
        return i


# ---- side panels ---------------------------------------------------------------------------------
class HoverCard(QWidget):
    """The image under the cursor, enlarged, with its label."""

    SIDE = 128

    def __init__(self, parent=None):
        super().__init__(parent)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.image = QLabel()
        self.image.setFixedSize(self.SIDE, self.SIDE)
        self.image.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.image.setStyleSheet("background: #f1f3f5; border: 1px solid #d0d7de;")
        self.caption = QLabel("Hover over a point to see its image; click it for its neighbours.")
        self.caption.setWordWrap(True)
        self.caption.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        layout.addWidget(self.image)
        layout.addWidget(self.caption, 1)
        self.index = -1

    def show_point(self, index: int, image, label: str, detail: str) -> None:
        self.index = index
        self.image.setPixmap(upscaled_pixmap(image, self.SIDE))
        self.caption.setText(f"<b>{html.escape(label)}</b><br><span style='color:{MUTED_COLOUR}'>"
                             f"{html.escape(detail)}</span>")

    def label_text(self) -> str:
        return self.caption.text()


class NeighbourGallery(QWidget):
    """The k nearest neighbours (cosine) of a clicked point: the point itself first."""

    def __init__(self, parent=None):
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        bar = QHBoxLayout()
        self.title = QLabel("<b>Nearest neighbours</b>")
        self.k = QSpinBox()
        self.k.setRange(1, 48)
        self.k.setValue(12)
        self.k.setPrefix("k = ")
        self.k.setToolTip("How many neighbours (the clicked image included)")
        bar.addWidget(self.title, 1)
        bar.addWidget(self.k)
        layout.addLayout(bar)
        self.grid = TileGrid(caption_lines=2)
        self.grid.clear("Click a point to see its nearest neighbours in feature space.")
        layout.addWidget(self.grid, 1)
        self.items: list[tuple[int, str, float]] = []   # (point index, label, similarity)

    def show_neighbours(self, indices, sims, images, labels: list[str], colours: list[str], title: str) -> None:
        self.items = [(int(i), labels[k], float(s)) for k, (i, s) in enumerate(zip(indices, sims))]
        tiles = []
        for k, (i, label, s) in enumerate(self.items):
            tiles.append((images[i], f"{label}\n{'query' if k == 0 else f'cos {s:.3f}'}", colours[k]))
        self.title.setText(f"<b>Nearest neighbours</b> <span style='color:{MUTED_COLOUR}'>{html.escape(title)}</span>")
        self.grid.set_tiles(tiles)
