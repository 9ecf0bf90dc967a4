"""A researcher's week, GUI side: plots that export (PNG / SVG / CSV) and log-scale, the Spectrum
tab, run management in the runs browser (notes, tags, names, delete to trash, archive, config
diff, new run from a config) and the comparison report."""

from __future__ import annotations

import csv
import json
import math
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from PySide6.QtGui import QImage

from workbench.dashboard import RunDashboard

from .conftest import write_fake_run


def spectrum_events(n=12, dim=32):
    events = []
    for i in range(n):
        step = 1 + 20 * i
        k = np.arange(1, dim + 1, dtype=float)
        lam = k ** -(3.0 - 2.0 * i / n)  # the spectrum flattens as training goes on
        lam /= lam.sum()
        for name, scale in (("spectrum", 1.0), ("backbone_spectrum", 0.8)):
            events.append({"kind": "metric", "name": name, "step": step, "epoch": 0, "time": float(step),
                           "values": (lam ** scale / (lam ** scale).sum()).tolist(),
                           "alpha": 3.0 - 2.0 * i / n, "rankme": 2.0 + i})
    return events


@pytest.fixture
def compared(qtbot, workspace):
    a = write_fake_run(workspace, "finished", name="alpha-run")
    b = write_fake_run(workspace, "stopped", name="beta-run")
    dash = RunDashboard()
    qtbot.addWidget(dash)
    dash.resize(1200, 800)
    dash.show()
    dash.overlay_runs([a, b])
    return dash


def test_compared_loss_exports_png_svg_csv_with_run_names(compared, tmp_path):
    tools = compared.tools["loss"]
    png = tools.export(tmp_path / "loss.png")
    image = QImage(str(png))
    assert not image.isNull() and image.width() > 100 and image.height() > 50
    svg = tools.export(tmp_path / "loss.svg")
    root = ET.parse(svg).getroot()
    paths = [el for el in root.iter() if el.tag.rsplit("}", 1)[-1] in ("path", "polyline")]
    assert len(paths) >= 2  # one per compared curve (plus axes)
    text = svg.read_text()
    assert "alpha-run" in text and "beta-run" in text  # the legend travels with the picture
    path = tools.export(tmp_path / "loss.csv")
    rows = list(csv.reader(path.open()))
    header = rows[0]
    assert len(header) == 4 and [h.split(" ")[0] for h in header] == ["alpha-run"] * 2 + ["beta-run"] * 2
    assert [h.split(" ", 1)[1].rsplit(" ", 2)[1:] for h in header] == [["loss", "step"], ["loss", "value"]] * 2
    assert len(rows) - 1 == 15  # the finished run: 3 epochs x 5 steps; the stopped one is shorter
    assert rows[1][0] == "1.0" and rows[-1][2] == ""
    assert len(compared.curves("loss")) == 2
    with pytest.raises(ValueError, match="unknown export format"):
        tools.export(tmp_path / "loss.bmp")


def test_every_plot_has_tools_and_log_toggles(compared, tmp_path):
    assert {"loss", "lr", "plane", "knn", "spectrum", "alpha", "rankme"} <= set(compared.tools)
    tools = compared.tools["loss"]
    view = compared._plots["loss"].getViewBox()
    assert view.menu is tools.menu
    assert [a.text() for a in tools.menu.actions()][:3] == ["Export PNG\u2026", "Export SVG\u2026", "Export CSV\u2026"]
    tools.log_actions["y"].setChecked(True)
    assert tools.log_mode() == (False, True)
    assert compared._plots["loss"].getAxis("left").logMode
    tools.set_log(x=True)
    assert tools.log_mode() == (True, True) and tools.log_actions["x"].isChecked()
    assert compared._plots["loss"].getAxis("bottom").logMode
    tools.set_log(x=False, y=False)
    assert tools.log_mode() == (False, False)
    assert tools.export(tmp_path / "log.png").exists()


def test_single_run_csv_has_one_pair_per_curve(qtbot, workspace, tmp_path):
    dash = RunDashboard()
    qtbot.addWidget(dash)
    dash.add_events([{"kind": "metric", "name": "alignment", "step": s, "epoch": 0, "time": s, "value": 1.0 / s}
                     for s in range(1, 6)] +
                    [{"kind": "metric", "name": "uniformity", "step": s, "epoch": 0, "time": s, "value": -s}
                     for s in range(1, 6)] +
                    [{"kind": "metric", "name": "moco/queue_fill", "step": s, "epoch": 0, "time": s, "value": s}
                     for s in range(1, 4)])
    dash._draw_all()
    rows = list(csv.reader(dash.tools["align_unif"].export(tmp_path / "au.csv").open()))
    assert rows[0] == ["alignment step", "alignment value", "uniformity step", "uniformity value"]
    assert len(rows) == 6
    plane = list(csv.reader(dash.tools["plane"].export(tmp_path / "plane.csv").open()))
    assert plane[0] == ["curve 1 alignment", "curve 1 uniformity"] and len(plane) == 6
    other = list(csv.reader(dash.tools["moco/queue_fill"].export(tmp_path / "other.csv").open()))
    assert other[0] == ["moco/queue_fill step", "moco/queue_fill value"] and len(other) == 4
    assert QImage(str(dash.tools["moco/queue_fill"].export(tmp_path / "other.png"))).width() > 0


def test_spectrum_tab_shows_heatmaps_and_curves(qtbot, tmp_path):
    dash = RunDashboard()
    qtbot.addWidget(dash)
    dash.add_events(spectrum_events())
    dash._draw_all()
    image = dash.spectrum.heatmap("spectrum")
    assert image.shape == (12, 32)  # x = reading (step), y = eigenvalue index
    assert image.max() <= 0.0 and image.min() >= -6.0
    assert image[0, 0] > image[0, -1]  # the leading eigenvalue dominates
    assert image[-1, -1] > image[0, -1]  # the tail grows: dimensionality spreads out
    assert dash.spectrum.heatmap("backbone_spectrum").shape == (12, 32)
    assert len(dash.spectrum.plots["alpha"].listDataItems()) == 2
    assert len(dash.spectrum.plots["rankme"].listDataItems()) == 2
    assert not dash.other_metrics()  # spectrum names never land in Other
    assert dash.tabs.tabText(2) == "Spectrum"
    rows = list(csv.reader(dash.tools["rankme"].export(tmp_path / "rankme.csv").open()))
    assert rows[0][0] == "projector step" and len(rows) == 13
    assert math.isclose(float(rows[-1][1]), 13.0)
