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
    assert [h.rsplit(" ", 1)[1] for h in header] == ["step", "value"] * 2
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


# ---- run management in the runs browser --------------------------------------------------------
from PySide6.QtWidgets import QMessageBox  # noqa: E402

from backend.run_lock import RunLock  # noqa: E402
from workbench import workers  # noqa: E402
from workbench.run_manager import RunManager, run_key  # noqa: E402
from workbench.run_state import RunState  # noqa: E402
from workbench.runs_browser import COLUMNS, RunsBrowser  # noqa: E402

from .conftest import quick_small  # noqa: E402


@pytest.fixture
def two_runs(workspace):
    a = write_fake_run(workspace, "finished", name="base")
    b = write_fake_run(workspace, "stopped", name="other")
    payload = json.loads((b / "config.json").read_text())
    payload["config"]["optim"]["lr"] = 0.123
    payload["config"]["model"]["projector_out_dim"] = 96
    (b / "config.json").write_text(json.dumps(payload))
    return a, b


def make_browser(qtbot, workspace, manager=None):
    workers.set_synchronous(True)
    browser = RunsBrowser(workspace, manager or RunManager(workspace))
    qtbot.addWidget(browser)
    browser.show()
    return browser


def cell(browser, run_dir, column):
    return browser.model.index(browser.model.row_of(run_dir), COLUMNS.index(column)).data()


def test_notes_tags_and_display_name_persist(qtbot, workspace, two_runs):
    a, _ = two_runs
    browser = make_browser(qtbot, workspace)
    dialog = browser.notes_dialog(a)
    dialog.name_edit.setText("ResNet baseline")
    dialog.tags_edit.setText("baseline, lr-sweep,, baseline")
    dialog.notes_edit.setPlainText("first try\nlr too high?")
    dialog.accept()
    meta = json.loads((a / "meta.json").read_text())
    assert meta == {"notes": "first try\nlr too high?", "tags": ["baseline", "lr-sweep"],
                    "name": "ResNet baseline", "archived": False}
    assert cell(browser, a, "Run") == "ResNet baseline" and cell(browser, a, "Tags") == "baseline, lr-sweep"
    browser.deleteLater()
    again = make_browser(qtbot, workspace)  # a new browser reads the files back
    assert cell(again, a, "Run") == "ResNet baseline" and cell(again, a, "Tags") == "baseline, lr-sweep"
    reopened = again.notes_dialog(a)
    assert reopened.notes_edit.toPlainText() == "first try\nlr too high?"
    assert reopened.tags_edit.text() == "baseline, lr-sweep"
    again.filter_edit.setText("lr-sweep")  # tags are searchable
    assert again.proxy.rowCount() == 1


def test_archive_hides_unless_show_archived(qtbot, workspace, two_runs):
    a, b = two_runs
    browser = make_browser(qtbot, workspace)
    browser.archive([a])
    assert browser.proxy.rowCount() == 1
    assert json.loads((a / "meta.json").read_text())["archived"] is True
    browser.archived_check.setChecked(True)
    assert browser.proxy.rowCount() == 2
    browser.archived_check.setChecked(False)
    browser.refresh()  # the worker's scan reads meta.json too
    assert browser.proxy.rowCount() == 1
    browser.archive([a], False)
    assert browser.proxy.rowCount() == 2


def test_delete_refused_while_training_or_locked(qtbot, workspace, two_runs, monkeypatch):
    a, b = two_runs
    manager = RunManager(workspace)
    state = RunState(a)
    state.set_live(True)
    state.set_state("running")
    manager.states[run_key(a)] = state
    browser = make_browser(qtbot, workspace, manager)
    warnings = []
    monkeypatch.setattr(QMessageBox, "warning", lambda *args: warnings.append(args[2]))
    monkeypatch.setattr(QMessageBox, "question", lambda *a: pytest.fail("asked to confirm a refused delete"))
    assert browser.delete([a]) == [] and a.is_dir()
    assert "is training (running)" in warnings[-1]
    with RunLock(b, "sslwb train"):
        assert browser.delete([b]) == [] and b.is_dir()
        assert "in use by process" in warnings[-1]


def test_delete_moves_to_trash_after_confirmation(qtbot, workspace, two_runs, monkeypatch):
    a, b = two_runs
    browser = make_browser(qtbot, workspace)
    monkeypatch.setattr(QMessageBox, "question", lambda *a: QMessageBox.StandardButton.No)
    assert browser.delete([a]) == [] and a.is_dir()
    asked = []
    monkeypatch.setattr(QMessageBox, "question", lambda *args: asked.append(args[2]) or QMessageBox.StandardButton.Yes)
    moved = browser.delete([a])
    assert len(moved) == 1 and moved[0].parent == workspace / "trash" and moved[0].name.startswith(a.name)
    assert not a.exists() and (moved[0] / "config.json").exists() and (moved[0] / "events.jsonl").exists()
    assert "trash" in asked[0]
    assert browser.model.rowCount() == 1 and browser.model.row_of(a) == -1


def test_config_diff_shows_exactly_the_differing_fields(qtbot, workspace, two_runs):
    a, b = two_runs
    browser = make_browser(qtbot, workspace)
    dialog = browser.diff_dialog([a, b])
    qtbot.addWidget(dialog)
    assert dialog.differing() == ["model.projector_out_dim", "name", "optim.lr"]
    shown = dialog.fields()  # method, backbone and data name the runs; then what differs
    assert shown == ["method.name", "model.backbone", "data.source", "model.projector_out_dim", "name", "optim.lr"]
    assert dialog.table.rowCount() == len(shown) and dialog.table.columnCount() == 2
    assert dialog.cell("optim.lr", 1) == "0.123" and dialog.cell("model.projector_out_dim", 1) == "96"
    assert dialog.table.horizontalHeaderItem(0).text() == cell(browser, a, "Run")
    dialog.show_all.setChecked(True)
    assert dialog.table.rowCount() > 30 and "optim.batch_size" in dialog.fields()
    assert dialog.cell("optim.batch_size", 0) == dialog.cell("optim.batch_size", 1)
    with pytest.raises(ValueError, match="at least two"):
        browser.diff_dialog([a])


def test_new_run_from_config_fills_the_editor(window, workspace):
    run = write_fake_run(workspace, "finished", name="from-a-run")
    window.browser.refresh()
    window.browser.configRequested.emit(run)
    assert window.config_model.value("name") == "from-a-run"
    assert window.config_model.value("optim.batch_size") == quick_small()["optim"]["batch_size"]


def test_comparison_report_is_written(qtbot, workspace, two_runs, monkeypatch):
    opened = []
    monkeypatch.setattr("workbench.runs_browser.QDesktopServices.openUrl", lambda url: opened.append(url))
    browser = make_browser(qtbot, workspace)
    out = workspace / "reports" / "cmp.html"
    task = browser.write_report(list(two_runs), out)
    assert task.done and out.exists() and "<html" in out.read_text().lower()
    assert opened and opened[0].toLocalFile() == str(out)
    default = browser.write_report(list(two_runs))
    assert default.done and list((workspace / "reports").glob("compare-*.html"))


def test_main_window_report_and_diff_actions(window, workspace, monkeypatch):
    monkeypatch.setattr("workbench.runs_browser.QDesktopServices.openUrl", lambda url: None)
    workers.set_synchronous(True)
    a = write_fake_run(workspace, "finished", name="x")
    b = write_fake_run(workspace, "finished", name="y")
    window.browser.refresh()
    window.browser.select([a, b])
    assert window.report_action.text().startswith("Comparison")
    window.report_action.trigger()
    assert list((workspace / "reports").glob("compare-*.html"))
    dialog = window.diff_selected()
    assert dialog is not None and dialog.table.columnCount() == 2
    dialog.close()


def test_inspect_scatter_exports_its_points(qtbot, tmp_path):
    from workbench.inspect_scatter import ScatterPanel
    panel = ScatterPanel()
    qtbot.addWidget(panel)
    panel.resize(400, 300)
    panel.show()
    xy = np.random.default_rng(0).normal(size=(50, 2)).astype(np.float32)
    panel.set_points(xy, np.zeros(50, int), ["#1f77b4"], "UMAP")
    panel.mark(3, [4, 5])
    rows = list(csv.reader(panel.tools.export(tmp_path / "scatter.csv").open()))
    assert len(rows) == 51 and len(rows[0]) == 2  # the points only, not the rings
    assert np.allclose([float(v) for v in rows[1]], xy[0], atol=1e-6)
    assert not QImage(str(panel.tools.export(tmp_path / "scatter.png"))).isNull()
    assert ET.parse(panel.tools.export(tmp_path / "scatter.svg")).getroot() is not None


def test_log_x_range_is_in_log_units_and_linear_comes_back(compared):
    tools, view = compared.tools["loss"], compared._plots["loss"].getViewBox()
    tools.set_log(x=True)
    lo, hi = view.viewRange()[0]
    assert hi < 3  # log10 of the last step (15) plus padding, not 15
    tools.set_log(x=False)
    lo, hi = view.viewRange()[0]
    assert 15 <= hi <= 50 and lo <= 0.0  # linear units again, the data (15 steps) in view
