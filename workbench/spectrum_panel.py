"""The dashboard's Spectrum tab: how the dimensionality of the representation grows, step by step.

Two heatmaps (projector and backbone; x = step, y = eigenvalue index, colour = log10 of the
normalised eigenvalue, from the ledger's ``spectra``) above the alpha-ReQ and RankMe curves
(``alpha_req`` / ``rankme`` series; dashed: backbone). Fed by the trainer's ``spectrum`` events
(``eval.spectrum_every_steps``).
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg

from . import plots

SPECTRA = ("spectrum", "backbone_spectrum")
CURVES = (("alpha", "alpha_req", 0), ("alpha", "backbone_alpha_req", 1), ("rankme", "rankme", 0),
          ("rankme", "backbone_rankme", 1))
METRICS = frozenset(SPECTRA) | {name for _, name, _ in CURVES}
LOG_FLOOR = -6.0  # log10 eigenvalues below this share the darkest colour
HINT = "Eigenspectrum readings appear here (eval.spectrum_every_steps)."


def log_spectrum(matrix: np.ndarray) -> np.ndarray:
    """log10 of eigenvalues (R, K), zeros, negatives and NaN clipped to ``LOG_FLOOR``."""
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.log10(np.where(np.isfinite(matrix) & (matrix > 0), matrix, 0.0))
    return np.clip(np.nan_to_num(out, nan=LOG_FLOOR, neginf=LOG_FLOOR), LOG_FLOOR, 0.0)


class SpectrumPanel:
    """The heatmaps and curves in a ``pg.GraphicsLayoutWidget`` (``widget``)."""

    def __init__(self, theme: plots.Theme):
        self.theme = theme
        self.widget = pg.GraphicsLayoutWidget()
        self.widget.ci.setContentsMargins(2, 2, 2, 2)
        self.plots: dict[str, pg.PlotItem] = {}
        self.images: dict[str, pg.ImageItem] = {}
        cmap = pg.colormap.get("viridis")
        for col, name in enumerate(SPECTRA):
            plot = plots.make_plot(self.widget, 0, col, "", "step", "eigenvalue index", theme)
            plot.getViewBox().invertY(False)
            image = pg.ImageItem(axisOrder="col-major")
            image.setColorMap(cmap)
            plot.addItem(image)
            self.plots[name], self.images[name] = plot, image
        self.colorbar = pg.ColorBarItem(values=(LOG_FLOOR, 0.0), colorMap=cmap, interactive=False,
                                        label="log10 eigenvalue")
        self.colorbar.setImageItem(list(self.images.values()))
        self.widget.addItem(self.colorbar, 0, 2)
        for col, key in enumerate(("alpha", "rankme")):
            self.plots[key] = plots.make_plot(self.widget, 1, col, "", "step", "", theme)
        for i in range(2):
            self.widget.ci.layout.setColumnStretchFactor(i, 1)
        self._curves: dict[tuple[int, str], pg.PlotDataItem] = {}
        self.apply_theme(theme)

    def apply_theme(self, theme: plots.Theme) -> None:
        """(Re)style the plots for ``theme``."""
        self.theme = theme
        self.widget.setBackground(theme.background)
        titles = {"spectrum": "Eigenspectrum \u00b7 projector", "backbone_spectrum": "Eigenspectrum \u00b7 backbone",
                  "alpha": f"alpha-ReQ &nbsp;<span style='color:{theme.muted}'>{plots.DASH} backbone</span>",
                  "rankme": f"RankMe &nbsp;<span style='color:{theme.muted}'>{plots.DASH} backbone</span>"}
        ylabels = {"alpha": "alpha (decay)", "rankme": "effective rank"}
        for key, plot in self.plots.items():
            plots.style_plot(plot, titles[key], "step", ylabels.get(key, "eigenvalue index"), theme)

    def clear(self) -> None:
        """Forget every reading."""
        for image in self.images.values():
            image.clear()
        for key in ("alpha", "rankme"):
            for item in list(self.plots[key].listDataItems()):
                self.plots[key].removeItem(item)
        self._curves.clear()

    def update(self, runs: list) -> None:
        """Redraw from ``runs``: [(ledger, colour index, label)]; the heatmaps show the first run,
        the curves every run (one colour each when several, else projector/backbone colours)."""
        if not runs:
            return
        for name, image in self.images.items():
            spectra = runs[0][0].spectra.get(name)
            self.set_heatmap(name, *(spectra.matrix() if spectra is not None else (np.zeros(0), np.zeros((0, 0)))))
        overlay = len(runs) > 1
        for i, (ledger, color, label) in enumerate(runs):
            for key, metric, style in CURVES:
                series = ledger.get(metric)
                if series is None or not series.n:
                    continue
                curve = self._curves.get((i, metric))
                if curve is None:
                    pen_color = plots.series_color(color if overlay else (0 if key == "alpha" else 2))
                    curve = plots.make_curve(self.plots[key], pen_color, None, style, symbol="o" if series.n < 50 else None)
                    curve.opts["name"] = f"{label} {'backbone' if style else 'projector'}".strip()
                    self._curves[(i, metric)] = curve
                curve.setData(series.steps, series.values)

    def set_heatmap(self, name: str, steps: np.ndarray, matrix: np.ndarray) -> None:
        """Show readings (steps (R,), eigenvalues (R, K)) of ``name`` as log10 colours."""
        image = self.images[name]
        if not len(steps):
            image.clear()
            return
        image.setImage(log_spectrum(matrix), levels=(LOG_FLOOR, 0.0), autoLevels=False)
        gap = float(steps[-1] - steps[-2]) if len(steps) > 1 else 1.0
        x0, x1 = float(steps[0]), float(steps[-1]) + gap
        image.setRect(x0, 0.0, x1 - x0, float(matrix.shape[1]))
        self.plots[name].getViewBox().autoRange(padding=0.0)

    def heatmap(self, name: str) -> np.ndarray | None:
        """The log10 image shown for ``name`` ((R, K) or None when empty; for tests)."""
        return self.images[name].image
