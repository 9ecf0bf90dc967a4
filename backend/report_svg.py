"""Inline SVG plots for the self-contained comparison report (:mod:`backend.report`): overlaid
line curves and a labelled 2-D scatter, drawn as plain SVG text (no plotting library, no network).
Every string that reaches the SVG is escaped here. numpy only.
"""

from __future__ import annotations

import math
from html import escape

import numpy as np

# Colour-blind-friendly palette (Okabe-Ito, then Tableau-like extras) for runs and classes.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000",
           "#8C564B", "#7F7F7F", "#BCBD22", "#17BECF")
WIDTH, HEIGHT = 428, 240
MARGIN = {"left": 52, "right": 140, "top": 28, "bottom": 38}  # legend in the right margin
LEGEND_CHARS = 18  # longer labels are shortened in a legend (the full one is its tooltip)


def colour(i: int) -> str:
    """The i-th colour of the palette (cycling)."""
    return PALETTE[i % len(PALETTE)]


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """About ``count`` round tick values covering [lo, hi] (steps of 1, 2 or 5 times a power of 10)."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return []
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / max(count, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    ticks, t = [], first
    while t <= hi + step * 1e-9:
        ticks.append(round(t, 12))
        t += step
    return ticks


def fmt(value) -> str:
    """A number for a table or an axis: 4 significant digits, '-' for missing/non-finite."""
    if value is None or isinstance(value, bool):
        return "-" if value is None else str(value)
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    v = float(value)
    if not math.isfinite(v):
        return "-" if math.isnan(v) else ("inf" if v > 0 else "-inf")
    return f"{v:.4g}"


def _range(values: list[np.ndarray]) -> tuple[float, float]:
    finite = [v[np.isfinite(v)] for v in values]
    finite = [v for v in finite if v.size]
    if not finite:
        return 0.0, 1.0
    lo, hi = min(float(v.min()) for v in finite), max(float(v.max()) for v in finite)
    if hi == lo:
        pad = abs(lo) * 0.05 or 0.5
        return lo - pad, hi + pad
    pad = (hi - lo) * 0.04
    return lo - pad, hi + pad


def _path(xs: np.ndarray, ys: np.ndarray, sx, sy) -> str:
    """SVG path data; a non-finite value breaks the line (a new M)."""
    parts, pen_down = [], False
    for x, y in zip(xs.tolist(), ys.tolist()):
        if not (math.isfinite(x) and math.isfinite(y)):
            pen_down = False
            continue
        parts.append(f"{'L' if pen_down else 'M'}{sx(x):.1f},{sy(y):.1f}")
        pen_down = True
    return " ".join(parts)


def _frame(title: str, x_ticks, y_ticks, sx, sy, x_label: str) -> list[str]:
    left, top = MARGIN["left"], MARGIN["top"]
    right, bottom = WIDTH - MARGIN["right"], HEIGHT - MARGIN["bottom"]
    out = [f'<text class="title" x="{left}" y="18">{escape(title)}</text>',
           f'<rect class="frame" x="{left}" y="{top}" width="{right - left}" height="{bottom - top}"/>']
    for t in y_ticks:
        y = sy(t)
        out.append(f'<line class="grid" x1="{left}" x2="{right}" y1="{y:.1f}" y2="{y:.1f}"/>'
                   f'<text class="tick" x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{escape(fmt(t))}</text>')
    for t in x_ticks:
        x = sx(t)
        out.append(f'<line class="grid" x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{bottom}"/>'
                   f'<text class="tick" x="{x:.1f}" y="{bottom + 16}" text-anchor="middle">{escape(fmt(t))}</text>')
    out.append(f'<text class="axis" x="{(left + right) / 2:.0f}" y="{HEIGHT - 6}" text-anchor="middle">'
               f'{escape(x_label)}</text>')
    return out


def _legend(entries: list[tuple[str, str, str]], x0: float, y0: float) -> list[str]:
    """Legend rows (label, colour, data-run) stacked from (x0, y0) inside the plot."""
    out = []
    for i, (label, col, key) in enumerate(entries):
        y = y0 + 14 * i
        short = label if len(label) <= LEGEND_CHARS else label[:LEGEND_CHARS - 1] + "\u2026"
        out.append(f'<g class="legend-entry" data-run="{escape(key)}"><title>{escape(label)}</title>'
                   f'<rect x="{x0:.0f}" y="{y - 8:.0f}" width="10" height="10" fill="{col}"/>'
                   f'<text class="legend" x="{x0 + 14:.0f}" y="{y + 1:.0f}">{escape(short)}</text></g>')
    return out


def line_plot(title: str, series: list[dict], x_label: str = "step") -> str:
    """An SVG with one ``<path class="curve" data-run=...>`` per series and a legend of every
    series. ``series``: dicts with ``label``, ``colour``, ``key`` (data-run), ``x``, ``y``
    (sequences; a series with no finite point gets a legend entry marked '(no data)', no path)."""
    xs = [np.asarray(s["x"], dtype=np.float64) for s in series]
    ys = [np.asarray(s["y"], dtype=np.float64) for s in series]
    x_lo, x_hi = _range(xs)
    y_lo, y_hi = _range(ys)
    left, top = MARGIN["left"], MARGIN["top"]
    right, bottom = WIDTH - MARGIN["right"], HEIGHT - MARGIN["bottom"]

    def sx(v):
        return left + (v - x_lo) / (x_hi - x_lo) * (right - left)

    def sy(v):
        return bottom - (v - y_lo) / (y_hi - y_lo) * (bottom - top)

    x_ticks = [t for t in nice_ticks(x_lo, x_hi) if x_lo <= t <= x_hi]
    y_ticks = [t for t in nice_ticks(y_lo, y_hi) if y_lo <= t <= y_hi]
    out = [f'<svg class="plot" viewBox="0 0 {WIDTH} {HEIGHT}" '
           f'width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="{escape(title)}">']
    out += _frame(title, x_ticks, y_ticks, sx, sy, x_label)
    legend = []
    for s, x, y in zip(series, xs, ys):
        d = _path(x, y, sx, sy)
        label = s["label"] if d else f"{s['label']} (no data)"
        legend.append((label, s["colour"], s["key"]))
        if d:
            out.append(f'<path class="curve" data-run="{escape(s["key"])}" d="{d}" fill="none" '
                       f'stroke="{s["colour"]}" stroke-width="1.6"><title>{escape(s["label"])}</title></path>')
    out += _legend(legend, right + 8, top + 8)
    out.append("</svg>")
    return "".join(out)


def scatter_plot(title: str, xy: np.ndarray, labels: np.ndarray | None, class_names: list[str],
                 max_points: int = 2000) -> str:
    """An SVG scatter of the (N, 2) points ``xy`` coloured by ``labels`` (one legend entry per
    class, up to 12), at most ``max_points`` points (an even, deterministic subsample)."""
    xy = np.asarray(xy, dtype=np.float64)
    if xy.ndim != 2 or xy.shape[1] != 2:
        raise ValueError(f"a scatter needs (N, 2) points, got shape {xy.shape}")
    keep = np.unique(np.linspace(0, len(xy) - 1, min(len(xy), max_points)).astype(int)) if len(xy) else []
    xy = xy[keep]
    lab = np.asarray(labels)[keep] if labels is not None else np.zeros(len(xy), dtype=int)
    size = HEIGHT + 20
    pad = 24
    x_lo, x_hi = _range([xy[:, 0]])
    y_lo, y_hi = _range([xy[:, 1]])

    def sx(v):
        return pad + (v - x_lo) / (x_hi - x_lo) * (size - 2 * pad)

    def sy(v):
        return size - pad - (v - y_lo) / (y_hi - y_lo) * (size - 2 * pad)

    width = size + 120
    out = [f'<svg class="plot scatter" viewBox="0 0 {width} {size}" '
           f'width="{width}" height="{size}" role="img" aria-label="{escape(title)}">',
           f'<text class="title" x="{pad}" y="16">{escape(title)}</text>',
           f'<rect class="frame" x="{pad}" y="{pad}" width="{size - 2 * pad}" height="{size - 2 * pad}"/>']
    for (x, y), c in zip(xy.tolist(), lab.tolist()):
        if math.isfinite(x) and math.isfinite(y):
            out.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="1.8" fill="{colour(int(c))}"/>')
    if labels is not None:
        classes = sorted(set(int(c) for c in lab.tolist()))[:len(PALETTE)]
        names = [(class_names[c] if 0 <= c < len(class_names) else str(c), colour(c), str(c)) for c in classes]
        out += _legend(names, size + 4, pad + 8)
    out.append("</svg>")
    return "".join(out)
