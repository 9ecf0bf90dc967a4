"""The live dashboard: its metric store (buffers, resume rule, progress) and the widget (curves
after a timer tick, history from a run directory, overlays, the Other grid, collapse warning)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from backend.config import ExperimentConfig
from backend.events import metric_series
from backend.runs import EVENTS_FILE, create_run
from workbench.dashboard import RunDashboard
from workbench.metric_store import MetricStore, Series, collapse_reason, projector_dim

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


# ---- the store --------------------------------------------------------------------------------
def test_series_grows_by_doubling_and_keeps_points():
    s = Series(capacity=4)
    for i in range(1000):
        s.append(i, i // 100, float(i) / 2, 0.0)
    assert len(s) == 1000 and len(s.value) == 1024
    np.testing.assert_array_equal(s.steps, np.arange(1000))
    assert s.last() == 499.5


def test_store_applies_the_resume_rule_like_metric_series():
    events = [metric("loss", 1.0 / s, s) for s in range(1, 31)]
    events += [metric("knn_top1", 0.3, 20), metric("knn_top1", 0.4, 30)]
    events.append({"kind": "status", "time": 2000.0, "state": "resumed", "step": 20, "message": ""})
    events += [metric("loss", 2.0 / s, s) for s in range(21, 26)] + [metric("odd", float("inf"), 22)]
    store = MetricStore()
    store.add_events(events[:32])
    store.take_dirty()
    store.add_events(events[32:])
    assert store.take_dirty() == {"loss", "knn_top1", "odd"}  # knn: its step-30 point was dropped
    # the same columns as backend.events.metric_series (compared as JSON: NaN != NaN)
    assert json.dumps(store.columns(), sort_keys=True) == json.dumps(metric_series(events), sort_keys=True)
    loss = store.get("loss")
    assert loss.steps.tolist() == list(range(1, 26))
    assert loss.values[20] == pytest.approx(2.0 / 21)  # the value from after the resume
    assert store.get("knn_top1").steps.tolist() == [20]
    assert math.isnan(store.last("odd"))


def test_store_progress_and_eta():
    store = MetricStore()
    store.add_events(run_events(steps=20))
    info = store.progress()
    assert (info.epoch, info.step, info.total_epochs, info.total_steps) == (2, 20, 10, 100)
    assert info.eta_seconds == pytest.approx(80.0)  # one step per second since step 1
    store.add_events([{"kind": "status", "time": 1.0, "state": "finished", "message": ""}])
    assert store.progress().eta_seconds == 0.0


def test_collapse_reason_uses_config_dim_or_an_estimate():
    healthy, collapsed = MetricStore(), MetricStore()
    healthy.add_events(run_events(steps=20))
    collapsed.add_events(run_events(steps=20, std=1e-4, rank=1.2))
    assert collapse_reason(healthy, projector_dim(healthy, D)) == ""
    assert projector_dim(healthy) == pytest.approx(D)  # estimated as 1/std^2 of the first points
    reason = collapse_reason(collapsed, projector_dim(collapsed, D))
    assert "embedding_std" in reason and "effective rank" in reason


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
    with qtbot.waitSignal(dash.progress, timeout=3000) as blocker:
        dash.load_history(run_dir)
    assert blocker.args[2] == ExperimentConfig().schedule.epochs
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
    labels = [label.text for _, label in dash.legend.items]
    assert labels == ["run-a", "run-b"]
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
