"""The live dashboard widget: curves after a timer tick, history from a run directory, overlays,
the Other grid, the collapse warning, and observing a ledger it does not own (the run's model).
The fold itself (buffers, resume rule, progress, collapse rule) is tested in tests/backend/test_ledger.py."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from backend.config import ExperimentConfig
from backend.ledger import RunLedger
from backend.runs import EVENTS_FILE, create_run
from workbench.dashboard import RunDashboard

D = 128  # ExperimentConfig's default projector_out_dim


def metric(name, value, step, epoch=0, t=None):
    return {"kind": "metric", "time": 1000.0 + step if t is None else t, "step": step, "epoch": epoch,
            "name": name, "value": value}


def run_events(steps=40, per_epoch=10, std=1 / math.sqrt(D), rank=60.0, extra=()):
    """A small plausible stream: loss/lr per step, probe metrics every 5 steps, kNN per epoch."""
    events = [{"kind": "status", "time": 1000.0, "state": "running", "message": "",
               "total_steps": 100, "steps_per_epoch": per_epoch, "epochs": 10}]
    for step in range(1, steps + 1):
        epoch = (step - 1) // per_epoch
        events += [metric("loss", 5.0 * math.exp(-step / 20) + 1, step, epoch), metric("lr", 0.01, step, epoch)]
        if step % 5 == 0:
            events += [metric("alignment", 1.0 - step / 100, step, epoch),
                       metric("uniformity", -1.0 - step / 20, step, epoch),
                       metric("embedding_std", std, step, epoch), metric("effective_rank", rank, step, epoch)]
        if step % per_epoch == 0:
            events.append(metric("knn_top1", 0.1 + 0.1 * epoch, step, epoch))
        events += [metric(name, 0.5, step, epoch) for name in extra]
    return events


def write_run(workspace, events, torn_tail: str = "", run_id=None):
    run_dir = create_run(workspace, ExperimentConfig(), run_id=run_id)
    text = "".join(json.dumps(e) + "\n" for e in events) + torn_tail
    (run_dir / EVENTS_FILE).write_text(text)
    return run_dir


@pytest.fixture
def dash(qtbot):
    widget = RunDashboard()
    qtbot.addWidget(widget)
    widget.resize(1000, 700)
    return widget


def data(curve):
    """All the points given to a curve (getData() would return only the clipped, downsampled view)."""
    x, y = curve.xData, curve.yData
    return (np.asarray([]), np.asarray([])) if x is None else (np.asarray(x), np.asarray(y))


# ---- the widget -------------------------------------------------------------------------------
def test_add_events_draws_on_the_next_tick(dash, qtbot):
    dash.add_events(run_events(steps=30))
    assert not dash.curves("loss") or len(data(dash.curves("loss")[0])[0]) == 0  # nothing drawn yet
    qtbot.waitUntil(lambda: len(dash.curves("loss")) == 1 and len(data(dash.curves("loss")[0])[0]) == 30,
                    timeout=3000)
    x, y = data(dash.curves("loss")[0])
    np.testing.assert_array_equal(x, np.arange(1, 31))
    assert y[0] == pytest.approx(5.0 * math.exp(-1 / 20) + 1)
    kx, _ = data(dash.curves("knn")[0])
    np.testing.assert_array_equal(kx, [1, 2, 3])  # kNN by completed epoch
    assert "loss" in dash.stats_label.text() and "kNN" in dash.stats_label.text()
    # more events: the same curve object grows (created once)
    curve = dash.curves("loss")[0]
    dash.add_events([metric("loss", 1.0, 31)])
    qtbot.waitUntil(lambda: len(data(curve)[0]) == 31, timeout=3000)
    assert dash.curves("loss") == [curve]


def test_load_history_from_a_run_dir_with_a_torn_line(dash, tmp_path, qtbot):
    events = run_events(steps=30)[1:]  # no "running" status: total epochs come from config.json
    events.append({"kind": "log", "time": 1040.0, "level": "warning", "message": "non-finite loss at step 30"})
    run_dir = write_run(tmp_path, events, torn_tail='{"kind": "metric", "time": 1, "step": 31, "na')
    dash.load_history(run_dir)
    assert dash.progress_info.total_epochs == ExperimentConfig().schedule.epochs
    x, _ = data(dash.curves("loss")[0])
    assert x.tolist() == list(range(1, 31))  # the torn step-31 line is skipped
    for key in ("lr", "align_unif", "std", "rank", "knn"):
        assert dash.curves(key), key
    assert run_dir.name in dash.title_label.text()
    assert "non-finite loss" in dash.log_view.toPlainText()


def test_overlay_runs_draws_one_curve_per_run(dash, tmp_path):
    a = write_run(tmp_path, run_events(steps=20), run_id="run-a")
    b = write_run(tmp_path, run_events(steps=30), run_id="run-b")
    dash.overlay_runs([a, b])
    for key in ("loss", "lr", "knn", "std", "rank"):
        assert len(dash.curves(key)) == 2, key
    lengths = sorted(len(data(c)[0]) for c in dash.curves("loss"))
    assert lengths == [20, 30]
    colors = {c.opts["pen"].color().name() for c in dash.curves("loss")}
    assert len(colors) == 2
    # the runs are keyed in the header, not in a legend over the curves
    assert "run-a" in dash.stats_label.text() and "run-b" in dash.stats_label.text()
    assert not dash.legend.items and not dash.legend.isVisible()
    dash.clear()
    assert [len(data(c)[0]) for c in dash.curves("loss")] == [0]  # one empty curve, ready for a live run
    assert dash.title_label.text() == "No run" and not dash.legend.items


def test_unknown_metrics_appear_in_the_other_grid(dash, qtbot):
    dash.add_events(run_events(steps=10, extra=("dino/teacher_entropy", "moco/queue_fill")))
    qtbot.waitUntil(lambda: len(dash.other_metrics()) == 2, timeout=3000)
    assert set(dash.other_metrics()) == {"dino/teacher_entropy", "moco/queue_fill"}
    assert len(data(dash.curves("dino/teacher_entropy")[0])[0]) == 10
    assert dash.tabs.tabText(1) == "Other (2)"


def test_collapse_warning_shows_only_for_a_collapsed_run(dash, tmp_path):
    healthy = write_run(tmp_path, run_events(steps=20), run_id="healthy")
    collapsed = write_run(tmp_path, run_events(steps=20, std=2e-4, rank=1.05), run_id="collapsed")
    dash.load_history(healthy)
    assert dash.collapse_message() == "" and dash.collapse_label.isHidden()
    dash.load_history(collapsed)
    assert "embedding_std" in dash.collapse_message()
    assert not dash.collapse_label.isHidden() and "Collapse" in dash.collapse_label.text()


def test_resume_in_a_live_stream_drops_stale_points(dash, qtbot):
    dash.add_events([metric("loss", 1.0, s) for s in range(1, 21)])
    dash.add_events([{"kind": "status", "time": 1.0, "state": "resumed", "step": 10, "message": "resumed"}])
    dash.add_events([metric("loss", 0.5, s) for s in range(11, 16)])
    qtbot.waitUntil(lambda: bool(dash.curves("loss")) and len(data(dash.curves("loss")[0])[0]) == 15,
                    timeout=3000)
    x, y = data(dash.curves("loss")[0])
    assert x.tolist() == list(range(1, 16)) and y[-1] == 0.5


def test_x_range_grows_in_round_steps_until_the_user_zooms(dash, qtbot):
    from workbench.plots import round_up
    assert [round_up(x) for x in (0.5, 7, 1021, 2400)] == [1.0, 8.0, 1200.0, 2500.0]
    dash.add_events([metric("loss", 1.0, s) for s in range(1, 1001)])
    view = dash.curves("loss")[0].getViewBox()
    qtbot.waitUntil(lambda: view.viewRange()[0][1] == 1200.0, timeout=3000)
    view.sigRangeChangedManually.emit([True, True])  # as a pan or zoom by the user does
    dash.add_events([metric("loss", 1.0, s) for s in range(1001, 3001)])
    qtbot.waitUntil(lambda: len(data(dash.curves("loss")[0])[0]) == 3000, timeout=3000)
    assert view.viewRange()[0][1] == 1200.0  # the user's view is left alone


def test_observes_a_ledger_it_does_not_own_and_a_new_view_shows_the_same(dash, tmp_path, qtbot):
    """The run tab's case: the ledger lives with the run (RunState), the dashboard only observes it,
    so a dashboard made later (a reopened tab) shows every point and log line at once."""
    run_dir = write_run(tmp_path, [])
    ledger = RunLedger()
    dash.set_run(run_dir, ledger)
    events = run_events(steps=20)
    events.append({"kind": "log", "time": 1030.0, "level": "info", "message": "hello from the trainer"})
    dash.notify(ledger.apply(events))
    qtbot.waitUntil(lambda: len(data(dash.curves("loss")[0])[0]) == 20, timeout=3000)
    assert "step 20/100" in dash.stats_label.text() and "epoch 2/10" in dash.stats_label.text()
    assert "hello from the trainer" in dash.log_view.toPlainText()
    again = RunDashboard()
    qtbot.addWidget(again)
    again.set_run(run_dir, ledger)
    assert len(data(again.curves("loss")[0])[0]) == 20
    assert "hello from the trainer" in again.log_view.toPlainText()
    assert again.progress_info == ledger.progress()
