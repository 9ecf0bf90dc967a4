"""The comparison report's eigenspectrum part (:mod:`backend.report`): per run, a heatmap of the
embedding covariance's eigenvalue spectrum over training (x = step, y = eigenvalue index, colour =
log10 of the normalised eigenvalue: the stepwise growth of dimensionality SSL runs show) as an
inline SVG holding a PNG data URI, and the final RankMe / alpha-ReQ for the final-metrics table.

The readings come from the trainer's ``spectrum`` / ``backbone_spectrum`` events folded by
:class:`backend.ledger.RunLedger` (the resume cut applied, as on the dashboard). numpy, zlib and
the standard library; every string that reaches the page is escaped.
"""

from __future__ import annotations

import base64
import struct
import zlib
from html import escape

import numpy as np

from .ledger import fold
from .report_svg import HEIGHT, MARGIN, WIDTH, _frame, fmt, nice_ticks
from .spectrum_log import SPECTRUM_NAMES, scalar_names

LOG_FLOOR = -6.0  # log10 eigenvalues below this share the darkest colour (as the dashboard's panel)
TITLES = {"spectrum": "projector", "backbone_spectrum": "backbone"}
# viridis at five stops: the colour map of the dashboard's Spectrum tab
VIRIDIS = np.array([[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]], dtype=np.float64)
FINAL_COLUMNS = (("rankme", "RankMe"), ("alpha_req", "alpha-ReQ"),
                 ("backbone_rankme", "backbone RankMe"), ("backbone_alpha_req", "backbone alpha-ReQ"))


def spectrum_readings(events) -> tuple[dict, dict]:
    """({spectrum name: (steps (R,), eigenvalues (R, K))}, {scalar name: final value}) of a run's
    events: the readings of every spectrum event name with any, and the last ``rankme`` /
    ``alpha_req`` (and backbone) values (None when never recorded)."""
    ledger = fold(events)
    spectra = {name: ledger.spectra[name].matrix() for name in SPECTRUM_NAMES
               if name in ledger.spectra and len(ledger.spectra[name])}
    finals = {}
    for name in SPECTRUM_NAMES:
        for scalar in scalar_names(name):
            series = ledger.series.get(scalar)
            values = np.asarray(series.values if series is not None else [], dtype=np.float64)
            finite = values[np.isfinite(values)]
            finals[scalar] = float(finite[-1]) if finite.size else None
    return spectra, finals


def final_cells(finals: dict) -> list[str]:
    """The final-metrics table's spectrum cells, in :data:`FINAL_COLUMNS` order."""
    return [fmt(finals.get(key)) for key, _ in FINAL_COLUMNS]


def log_spectrum(matrix: np.ndarray) -> np.ndarray:
    """log10 of eigenvalues, zeros, negatives and NaN clipped to :data:`LOG_FLOOR`."""
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.log10(np.where(np.isfinite(matrix) & (matrix > 0), matrix, 0.0))
    return np.clip(np.nan_to_num(out, nan=LOG_FLOOR, neginf=LOG_FLOOR), LOG_FLOOR, 0.0)


def colours(log_values: np.ndarray) -> np.ndarray:
    """uint8 RGB (..., 3) of log10 eigenvalues in [LOG_FLOOR, 0] on the viridis stops."""
    t = (np.asarray(log_values, dtype=np.float64) - LOG_FLOOR) / -LOG_FLOOR * (len(VIRIDIS) - 1)
    lo = np.clip(np.floor(t).astype(int), 0, len(VIRIDIS) - 2)
    frac = (t - lo)[..., None]
    return np.round(VIRIDIS[lo] * (1 - frac) + VIRIDIS[lo + 1] * frac).astype(np.uint8)


def png_bytes(rgb: np.ndarray) -> bytes:
    """A PNG file of an (H, W, 3) uint8 image (8-bit RGB, no filter)."""
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    h, w, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[y].tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def heatmap_image(steps: np.ndarray, matrix: np.ndarray, columns: int) -> np.ndarray:
    """(K, columns, 3) uint8: pixel column c shows the latest reading at or before its step on an
    even step axis from the first to the last reading; row 0 is the highest eigenvalue index."""
    steps = np.asarray(steps, dtype=np.float64)
    grid = np.linspace(steps[0], steps[-1], columns) if len(steps) > 1 else np.full(columns, steps[0])
    pick = np.clip(np.searchsorted(steps, grid, side="right") - 1, 0, len(steps) - 1)
    return colours(log_spectrum(matrix[pick].T[::-1]))


def heatmap_svg(title: str, steps: np.ndarray, matrix: np.ndarray, key: str) -> str:
    """An SVG heatmap (``class="plot heatmap"``) of a spectrum's readings with step and eigenvalue
    index axes and a log10 colour bar; ``key`` makes its gradient id unique in the page."""
    left, top = MARGIN["left"], MARGIN["top"]
    right, bottom = WIDTH - MARGIN["right"], HEIGHT - MARGIN["bottom"]
    k = matrix.shape[1]
    x_lo, x_hi = float(steps[0]), float(max(steps[-1], steps[0] + 1))
    y_lo, y_hi = 0.5, k + 0.5

    def sx(v):
        return left + (v - x_lo) / (x_hi - x_lo) * (right - left)

    def sy(v):
        return bottom - (v - y_lo) / (y_hi - y_lo) * (bottom - top)

    png = base64.b64encode(png_bytes(heatmap_image(steps, matrix, right - left))).decode("ascii")
    x_ticks = [t for t in nice_ticks(x_lo, x_hi) if x_lo <= t <= x_hi]
    y_ticks = [t for t in nice_ticks(1, k) if 1 <= t <= k and float(t).is_integer()]
    gid = f"spectrum-gradient-{escape(key)}"
    stops = "".join(f'<stop offset="{i / (len(VIRIDIS) - 1):.2f}" stop-color="rgb({r:.0f},{g:.0f},{b:.0f})"/>'
                    for i, (r, g, b) in enumerate(VIRIDIS[::-1]))
    bar_x = right + 14
    out = [f'<svg class="plot heatmap" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" '
           f'role="img" aria-label="{escape(title)}">',
           f'<defs><linearGradient id="{gid}" x1="0" y1="0" x2="0" y2="1">{stops}</linearGradient></defs>',
           f'<image x="{left}" y="{top}" width="{right - left}" height="{bottom - top}" preserveAspectRatio="none" '
           f'style="image-rendering:pixelated" href="data:image/png;base64,{png}"/>']
    out += _frame(title, x_ticks, y_ticks, sx, sy, "step")
    out += [f'<rect x="{bar_x}" y="{top}" width="12" height="{bottom - top}" fill="url(#{gid})"/>',
            f'<text class="tick" x="{bar_x + 16}" y="{top + 8}">0</text>',
            f'<text class="tick" x="{bar_x + 16}" y="{bottom}">{fmt(LOG_FLOOR)}</text>',
            f'<text class="legend" x="{bar_x + 16}" y="{(top + bottom) / 2:.0f}">log10 eigenvalue</text>',
            f'<text class="axis" x="12" y="{(top + bottom) / 2:.0f}" text-anchor="middle" '
            f'transform="rotate(-90 12 {(top + bottom) / 2:.0f})">eigenvalue index</text>', "</svg>"]
    return "".join(out)


def spectrum_section(runs, readings: list[tuple[dict, dict]]) -> str:
    """The report's Spectrum section: one heatmap per run and recorded spectrum (projector,
    backbone), captioned with its readings and final RankMe / alpha-ReQ; a run without spectrum
    events gets a sentence saying so."""
    figures, missing = [], []
    for i, (run, (spectra, finals)) in enumerate(zip(runs, readings)):
        if not spectra:
            missing.append(run.label)
            continue
        for name, (steps, matrix) in spectra.items():
            rank, alpha = scalar_names(name)[1], scalar_names(name)[0]
            svg = heatmap_svg(f"{run.label}: {TITLES.get(name, name)} spectrum", steps, matrix, f"run{i}-{name}")
            caption = (f"{len(steps)} readings, steps {int(steps[0])}-{int(steps[-1])}, top {matrix.shape[1]} "
                       f"eigenvalues; final RankMe {fmt(finals.get(rank))}, alpha-ReQ {fmt(finals.get(alpha))}")
            figures.append(f'<figure class="spectrum" data-run="run{i}" data-spectrum="{escape(name)}">{svg}'
                           f'<figcaption>{escape(caption)}</figcaption></figure>')
    note = (f"<p>No spectrum events (eval.spectrum_every_steps) in: {escape(', '.join(missing))}.</p>"
            if missing else "")
    return (f'<section id="spectrum"><h2>Eigenvalue spectrum</h2><div class="grid">{"".join(figures)}</div>'
            f"{note}</section>")
