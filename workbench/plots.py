"""pyqtgraph helpers for the live dashboard: themed plots, fast curves, the alignment–uniformity
plane, the collapse band, and the catalogue of plots (which metric goes where, in which style).

Curves follow the pyqtgraph way for live data: each is created once, fed numpy arrays with one
``setData`` per redraw, and drawn with peak downsampling and clip-to-view so thousands of points
stay cheap.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QFont, QPalette
from PySide6.QtWidgets import QWidget



# Okabe-Ito-like categorical colours: distinct on dark and light backgrounds, colour-blind safe.
SERIES_COLORS = ("#4c9be8", "#e69f00", "#2ca58d", "#d55e8f", "#a78bfa", "#c9b22e", "#56b4e9",
                 "#e8684a", "#8dd35f", "#b0b0b0")
PEN_STYLES = (Qt.PenStyle.SolidLine, Qt.PenStyle.DashLine, Qt.PenStyle.DotLine, Qt.PenStyle.DashDotLine)
WARNING_COLOR = "#e8684a"
SOLID, DASH = "\u2501", "\u254d"  # line marks in the titles' colour keys
PLANE_COLORMAP = pg.colormap.get("viridis")


def plane_colors(theme) -> list[QColor]:
    """Early-to-late colours of the plane's points: the part of viridis that stands out from the
    background (its dark purple vanishes on dark plots, its yellow on white ones)."""
    start, stop = (0.25, 1.0) if theme.dark else (0.0, 0.85)
    return PLANE_COLORMAP.map(np.linspace(start, stop, 64), mode="qcolor")


def series_color(index: int) -> str:
    """The categorical colour for series/run number ``index``."""
    return SERIES_COLORS[index % len(SERIES_COLORS)]


@dataclass(frozen=True)
class Theme:
    """Plot colours that match the surrounding Qt palette (dark or light)."""

    dark: bool
    background: str
    foreground: str
    grid_alpha: float = 0.25

    @property
    def muted(self) -> str:
        """Colour for secondary marks (reference lines, hints)."""
        return "#8a8f98" if self.dark else "#6b7280"


def theme_for(widget: QWidget) -> Theme:
    """Dark plots for a dark window palette, light ones otherwise."""
    window = widget.palette().color(QPalette.ColorRole.Window)
    if window.lightness() < 128:
        return Theme(True, "#1e1f22", "#d4d6da")
    return Theme(False, "#ffffff", "#30343b")


def small_font(points: float = 8.0) -> QFont:
    """The font used for tick labels."""
    font = QFont()
    font.setPointSizeF(points)
    return font


def make_plot(layout: pg.GraphicsLayoutWidget, row: int, col: int, title: str, xlabel: str,
              ylabel: str, theme: Theme) -> pg.PlotItem:
    """A plot in ``layout`` set up for live data: titles and axis labels, grid, peak downsampling,
    clip-to-view, no context-menu extras that would fight the live updates."""
    plot = layout.addPlot(row=row, col=col)
    _clip_title(plot.titleLabel)
    style_plot(plot, title, xlabel, ylabel, theme)
    plot.setDownsampling(auto=True, mode="peak")
    plot.setClipToView(True)
    # Major grid lines only: pyqtgraph draws every grid level alpha-blended across the whole view,
    # and the minor levels tripled the cost of a repaint.
    plot.showGrid(x=True, y=True, alpha=theme.grid_alpha)
    for side in ("left", "bottom"):
        plot.getAxis(side).setStyle(maxTickLevel=0)
    plot.getViewBox().setDefaultPadding(0.03)
    plot.setMenuEnabled(False)
    return plot


def _clip_title(label: pg.LabelItem) -> None:
    """Let a plot title be narrower than its text (clipped) instead of widening the grid column:
    pyqtgraph pins a LabelItem's minimum width to its text."""
    pin_to_text = label.updateMin

    def update_min():
        pin_to_text()
        label.setMinimumWidth(0)

    label.updateMin = update_min
    label.setFlag(label.GraphicsItemFlag.ItemClipsChildrenToShape)


def style_plot(plot: pg.PlotItem, title: str, xlabel: str, ylabel: str, theme: Theme) -> None:
    """(Re)apply title, labels and theme colours to a plot."""
    plot.setTitle(title, color=theme.foreground, size="9pt")
    for side, label in (("bottom", xlabel), ("left", ylabel)):
        axis = plot.getAxis(side)
        axis.setPen(pg.mkPen(theme.muted))
        axis.setTextPen(pg.mkPen(theme.foreground))
        axis.setTickFont(small_font())
        axis.setLabel(label, color=theme.foreground, **{"font-size": "8pt"})
        axis.enableAutoSIPrefix(False)  # ticks are in real units: no clipped "(x0.001)" scale
    plot.getAxis("left").setWidth(48)


def make_curve(plot: pg.PlotItem, color: str, name: str | None = None, style: int = 0,
               width: float = 1.0, symbol: str | None = None) -> pg.PlotDataItem:
    """One live curve (created once, then fed with ``setData``). Dense curves keep width 1: wider
    pens go through Qt's stroker and cost several times more per repaint."""
    pen = pg.mkPen(color, width=width, style=PEN_STYLES[style % len(PEN_STYLES)])
    kwargs = {}
    if symbol:  # sparse series (per-epoch) read better with their points marked
        kwargs = {"symbol": symbol, "symbolSize": 5, "symbolBrush": color, "symbolPen": None}
    curve = pg.PlotDataItem(pen=pen, name=name, **kwargs)
    plot.addItem(curve)
    return curve


_ROUND = (1.0, 1.2, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0)


def round_up(x: float) -> float:
    """The smallest of 1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8 times a power of ten that is >= x."""
    if x <= 1.0:
        return 1.0
    scale = 10.0 ** math.floor(math.log10(x))
    return next(m * scale for m in _ROUND if m * scale >= x)


class XFollower:
    """Keeps a live plot's x range at [0, a round number just past the data], so the x axis (and
    its grid) is redrawn a few times per decade of steps rather than on every tick: pyqtgraph's own
    x auto-range moves it each time a point arrives, and regenerating axes dominated the repaint.
    A user's pan or zoom takes over; the plot's auto-range button hands control back. On a log x
    axis it stands aside (pyqtgraph's auto-range works in log units there)."""

    def __init__(self, plot: pg.PlotItem):
        self.view = plot.getViewBox()
        self.active, self.top, self.x_max = True, 0.0, 0.0
        self.view.sigRangeChangedManually.connect(self._user_moved)
        self.view.sigStateChanged.connect(self._state_changed)
        self.reset()

    def reset(self) -> None:
        """Follow again from an empty plot."""
        self.active, self.top, self.x_max = True, 0.0, 0.0
        self.view.enableAutoRange(x=False)

    def note(self, x_max: float) -> None:
        """The data now reaches ``x_max``: widen the range when it passes the current end."""
        self.x_max = max(self.x_max, x_max)
        if self.active and x_max > self.top * 0.98 and not self._log_x():
            self.top = round_up(x_max / 0.98)  # keep the newest point off the right edge
            self.view.setXRange(-0.02 * self.top, self.top, padding=0.0)  # 0 clear of the axis

    def fit(self) -> None:
        """End the range at the data (a loaded run); new points still widen it in round steps."""
        if self.active and self.x_max > 0 and not self._log_x():
            self.top = self.x_max / 0.98
            self.view.setXRange(-0.02 * self.top, self.top, padding=0.0)

    def _log_x(self) -> bool:
        return bool(self.view.state["logMode"][0])

    def _user_moved(self, *_) -> None:
        self.active = False

    def _state_changed(self, *_) -> None:
        if self._log_x():
            return
        if self.view.state["autoRange"][0] is not False:  # "A" button / View All: follow again
            self.active = True
            self.view.enableAutoRange(x=False)  # emits sigStateChanged again, now with x off
            top, self.top = self.top, 0.0
            self.note(top)


def add_legend(plot: pg.PlotItem, theme: Theme) -> pg.LegendItem:
    """A compact legend in the top-right corner, readable on both themes."""
    bg = QColor(theme.background)
    bg.setAlpha(200)
    legend = plot.addLegend(offset=(-4, 4), labelTextColor=theme.foreground, labelTextSize="8pt",
                            brush=pg.mkBrush(bg), pen=pg.mkPen(theme.muted), verSpacing=-6)
    return legend


class CollapseBand:
    """Shades [0, 0.1/sqrt(D)] of an embedding_std plot with a dashed line at its top (the
    collapse level), and a dotted line at the healthy level 1/sqrt(D) when D is known."""

    def __init__(self, plot: pg.PlotItem, theme: Theme):
        color = QColor(WARNING_COLOR)
        color.setAlpha(40)
        self.region = pg.LinearRegionItem((0.0, 0.0), orientation="horizontal", movable=False,
                                          brush=pg.mkBrush(color), pen=pg.mkPen(None))
        self.region.setZValue(-10)
        self.line = pg.InfiniteLine(0.0, angle=0, movable=False,
                                    pen=pg.mkPen(WARNING_COLOR, width=1, style=Qt.PenStyle.DashLine),
                                    label="collapse", labelOpts={"position": 0.08, "color": WARNING_COLOR,
                                                                 "anchors": [(0, 1), (0, 1)]})
        self.healthy = pg.InfiniteLine(0.0, angle=0, movable=False,
                                       pen=pg.mkPen(theme.muted, width=1, style=Qt.PenStyle.DotLine),
                                       label="healthy 1/\u221aD", labelOpts={"position": 0.08, "color": theme.muted,
                                                                            "anchors": [(0, 0), (0, 0)]})
        for item in (self.region, self.line, self.healthy):
            plot.addItem(item, ignoreBounds=True)
        self.set_dim(None)

    def set_dim(self, dim: float | None) -> None:
        """Place the band for projector dimension ``dim`` (hidden when unknown)."""
        visible = bool(dim)
        for item in (self.region, self.line, self.healthy):
            item.setVisible(visible)
        if visible:
            level = 0.1 / np.sqrt(dim)
            self.region.setRegion((0.0, level))
            self.line.setValue(level)
            self.healthy.setValue(1.0 / np.sqrt(dim))


class PlaneView:
    """The alignment–uniformity plane: one point per probe evaluation, coloured early->late with a
    colour map (single run) or in the run's colour (comparison), the latest point ringed."""

    def __init__(self, plot: pg.PlotItem, theme: Theme, color: str | None = None, name: str | None = None):
        self.color = color
        self._brushes = [pg.mkBrush(c) for c in plane_colors(theme)]
        self.path = pg.PlotDataItem(pen=pg.mkPen(color or theme.muted, width=1), name=name)
        self.path.setOpacity(0.6 if color else 0.35)
        self.scatter = pg.ScatterPlotItem(size=6, pen=None, brush=pg.mkBrush(color or theme.foreground))
        self.latest = pg.ScatterPlotItem(size=11, pen=pg.mkPen(theme.foreground, width=1.5),
                                         brush=pg.mkBrush(None))
        for item in (self.path, self.scatter, self.latest):
            plot.addItem(item)

    def set_data(self, x: np.ndarray, y: np.ndarray, t: np.ndarray) -> None:
        """Show points (x=alignment, y=uniformity) evaluated at times ``t``."""
        self.path.setData(x, y)
        if self.color:
            self.scatter.setData(x, y)
        else:
            span = float(t[-1] - t[0]) if len(t) > 1 else 0.0
            frac = (t - t[0]) / span if span > 0 else np.ones(len(t))
            idx = np.clip((frac * 63).astype(int), 0, 63)
            brushes = self._brushes
            self.scatter.setData(x, y, brush=[brushes[i] for i in idx])
        self.latest.setData(x[-1:], y[-1:])


def plane_points(alignment, uniformity) -> tuple | None:
    """(alignment, uniformity, time) at the steps both series have, or None when there are none."""
    if alignment is None or uniformity is None or not alignment.n or not uniformity.n:
        return None
    _, ia, iu = np.intersect1d(alignment.steps, uniformity.steps, return_indices=True)
    if not len(ia):
        return None
    return alignment.values[ia], uniformity.values[iu], alignment.times[ia]


@dataclass
class CurveBinding:
    """A live curve and how to feed it from its series (x: 'step', or 'epoch' drawn 1-based)."""

    item: pg.PlotDataItem
    x: str
    follower: XFollower

    def update(self, series) -> None:
        """Give the curve all of ``series`` and let the x range follow its last point."""
        x = series.steps if self.x == "step" else series.epochs + 1
        self.item.setData(x, series.values)
        if len(x):
            self.follower.note(float(x[-1]))


# ---- the dashboard's plot catalogue ------------------------------------------------------------
@dataclass(frozen=True)
class CurveSpec:
    """A metric drawn in a plot: its legend label, colour index and pen style (0 solid, 1 dashed)."""

    metric: str
    label: str
    color: int = 0
    style: int = 0
    overlay: bool = True  # also drawn when several runs are compared


@dataclass(frozen=True)
class PlotSpec:
    """One plot of the overview grid."""

    key: str
    title: str
    ylabel: str
    curves: tuple[CurveSpec, ...]
    x: str = "step"          # "step", or "epoch" for per-epoch metrics (x = completed epochs)
    overlay_note: str = ""   # how to tell a run's curves apart when several runs are compared


PLOTS = (
    PlotSpec("loss", "Loss", "loss", (CurveSpec("loss", "loss"),)),
    PlotSpec("lr", "Learning rate", "lr", (CurveSpec("lr", "lr", 4),)),
    PlotSpec("throughput", "Throughput", "img/s", (CurveSpec("throughput", "img/s", 2),)),
    PlotSpec("knn", "kNN top-1 (held-out)", "accuracy", (CurveSpec("knn_top1", "kNN top-1", 1),),
             x="epoch"),
    PlotSpec("align_unif", "Alignment & uniformity", "value", (
        CurveSpec("alignment", "alignment", 0), CurveSpec("uniformity", "uniformity", 1),
        CurveSpec("backbone_alignment", "alignment (backbone)", 0, 1, overlay=False),
        CurveSpec("backbone_uniformity", "uniformity (backbone)", 1, 1, overlay=False)),
        overlay_note="solid: alignment, dashed: uniformity"),
    PlotSpec("std", "Embedding std", "std", (
        CurveSpec("embedding_std", "projector", 0), CurveSpec("backbone_embedding_std", "backbone", 1, 1)),
        overlay_note="solid: projector, dashed: backbone"),
    PlotSpec("rank", "Effective rank", "rank (RankMe)", (
        CurveSpec("effective_rank", "projector", 0), CurveSpec("backbone_effective_rank", "backbone", 1, 1)),
        overlay_note="solid: projector, dashed: backbone"),
    PlotSpec("epoch_time", "Epoch time", "seconds", (CurveSpec("epoch_time", "epoch time", 5),), x="epoch"),
)
PLANE_METRICS = ("alignment", "uniformity")
KNOWN_METRICS = {c.metric for p in PLOTS for c in p.curves}
# Where each spec goes in the 3-column grid; the plane takes the slot after alignment & uniformity.
GRID_ORDER = ("loss", "lr", "throughput", "knn", "align_unif", "plane", "std", "rank", "epoch_time")


_ORDER = {m: i for i, m in enumerate(c.metric for p in PLOTS for c in p.curves)}


def metric_order(name: str) -> tuple[int, str]:
    """Known metrics first, in plot order (stable curve creation and colours), then by name."""
    return _ORDER.get(name, len(_ORDER)), name


def plot_spec(key: str) -> PlotSpec:
    """The catalogue entry of a plot."""
    return next(p for p in PLOTS if p.key == key)


def plot_title(spec: PlotSpec, theme: Theme, overlay: bool) -> str:
    """The title, with a colour key of the curves (one run) or how to read them (comparing runs)."""
    if overlay:
        short = spec.overlay_note.replace("solid: ", SOLID + " ").replace("dashed: ", DASH + " ").replace(",", "")
        note = f"<span style='color:{theme.muted}'>&nbsp; {short}</span>"  # short: titles are not clipped
        return spec.title + (note if spec.overlay_note else "")
    if len(spec.curves) == 1:
        return spec.title
    if spec.key == "align_unif":  # compact: the words carry the colours' meaning
        a, u = (series_color(c.color) for c in spec.curves[:2])
        return (f"Alignment <span style='color:{a}'>{SOLID}</span> & uniformity "
                f"<span style='color:{u}'>{SOLID}</span> &nbsp;"
                f"<span style='color:{theme.muted}'>{DASH} backbone</span>")
    keys = [f"<span style='color:{series_color(c.color)}'>{DASH if c.style else SOLID} "
            f"{html.escape(c.label)}</span>" for c in spec.curves]
    return spec.title + " &nbsp; " + " &nbsp;".join(keys)


PLANE_TITLE = "Alignment\u2013uniformity \u00b7 lower-left is better"


def plane_xlabel(theme: Theme, overlay: bool) -> str:
    """The plane's x label; for one run it also keys the early-to-late colours."""
    if overlay:
        return "alignment"
    colors = plane_colors(theme)
    early, late = colors[0].name(), colors[-1].name()
    return (f"alignment &nbsp; (<span style='color:{early}'>\u25cf</span> early \u2192 "
            f"<span style='color:{late}'>\u25cf</span> late)")
