"""The Sweep dialog and Sweeps tab without trainers: random mode, bad input refused (nothing
created), the heatmap of hand-written runs, and the Queue dock's refusals."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest

from backend.config import ExperimentConfig
from backend.run_queue import RunQueue
from backend.runs import EVENTS_FILE, list_runs
from workbench.sweep_dialog import SweepDialog
from workbench.sweep_view import SweepView

from .conftest import quick_small


def dialog(qtbot, workspace) -> SweepDialog:
    dlg = SweepDialog(ExperimentConfig.from_dict(quick_small()), workspace, "cpu")
    qtbot.addWidget(dlg)
    return dlg


def finish(run_dir, knn):
    events = [{"kind": "metric", "time": 1.0, "step": 1, "epoch": 0, "name": "knn_top1", "value": knn},
              {"kind": "status", "time": 2.0, "state": "finished", "message": "done", "step": 1, "epoch": 1}]
    (run_dir / EVENTS_FILE).write_text("".join(json.dumps(e) + "\n" for e in events))


def test_random_mode_points_in_their_ranges(qtbot, workspace):
    dlg = dialog(qtbot, workspace)
    dlg.set_mode("random", points=5, seed=3)
    dlg.set_fields([("optim.lr", "log-uniform:0.001:0.1"), ("method.temperature", "0.1, 0.2")])
    points = dlg.points()
    assert len(points) == 5 and dlg.summary.text() == "5 runs, queued on cpu"
    assert all(0.001 <= p["optim.lr"] <= 0.1 and p["method.temperature"] in (0.1, 0.2) for p in points)
    assert points == dlg.points()  # seeded
    dlg.name_edit.setText("rnd")
    dlg.accept()
    assert len(dlg.run_dirs) == 5 and dlg.sweep_id
    assert [e.state for e in RunQueue(workspace).entries()] == ["queued"] * 5
    view = SweepView(workspace)
    qtbot.addWidget(view)
    view.show_sweep(dlg.sweep_id)
    assert view.table.rowCount() == 5 and view.plot.mode == "scatter"  # random points are no grid


def test_bad_rows_are_refused_and_nothing_is_created(qtbot, workspace):
    dlg = dialog(qtbot, workspace)
    dlg.set_fields([("optim.lr", "0.1, 0.2"), ("optim.lr", "0.3")])
    assert "swept twice" in dlg.summary.text() and not dlg.ok_button.isEnabled()
    dlg.set_fields([("optim.lr", "")])
    assert "give its values" in dlg.summary.text()
    dlg.set_fields([("optim.lr", "0.1, -1")])  # -1 is out of range: the whole sweep is refused
    assert dlg.ok_button.isEnabled()
    dlg.accept()
    assert "optim.lr" in dlg.summary.text() and dlg.run_dirs == [] and dlg.result() == 0
    assert list_runs(workspace) == [] and RunQueue(workspace).entries() == []


def test_sweeps_tab_heatmap_of_a_finished_grid(qtbot, workspace):
    dlg = dialog(qtbot, workspace)
    dlg.set_fields([("method.temperature", "0.1, 0.5"), ("optim.lr", "0.05, 0.1, 0.2")])
    dlg.accept()
    for i, run_dir in enumerate(dlg.run_dirs[:5]):
        finish(run_dir, 0.1 + 0.1 * i)
    view = SweepView(workspace)
    qtbot.addWidget(view)
    view.show_sweep(dlg.sweep_id)
    assert view.plot.mode == "heatmap" and view.plot.matrix.shape == (2, 3)
    assert np.isfinite(view.plot.matrix).sum() == 5 and math.isnan(view.plot.matrix[1, 2])  # unfinished: blank
    assert view.plot.matrix[0].tolist() == pytest.approx([0.1, 0.2, 0.3])
    ticks = view.plot.getAxis("bottom")._tickLevels[0]
    assert [t for _, t in ticks] == ["0.05", "0.1", "0.2"]
    assert [view.cell_text(r, "final kNN") for r in range(6)][-2:] == ["0.5000", "—"]
    finish(dlg.run_dirs[5], 0.9)
    view.refresh(force=True)  # the files changed: re-read
    assert np.isfinite(view.plot.matrix).all() and view.cell_text(5, "state") == "finished"
    view.resize(900, 500)
    assert view.grab().width() == 900  # paints (a method shadowing a Qt virtual once crashed grab())


def test_queue_dock_refuses_removing_a_training_run(window, workspace):
    window.queue.runner.set_autostart(False)
    run_dir = window.queue.runner.add(ExperimentConfig.from_dict(quick_small()), "cpu")
    queue = RunQueue(workspace)
    queue.mark_started(run_dir, pid=os.getpid(), device="cpu")  # alive: not settled as gone
    window.queue.runner.poll()
    view = window.queue.view
    view.select_run(run_dir)
    assert not view.remove_button.isEnabled() and not view.up_button.isEnabled()
    messages = []
    view.message.connect(messages.append)
    view._remove()
    assert "is training" in messages[0] and queue.get(run_dir) is not None
    assert view.grab().width() > 0


def test_a_run_launched_by_hand_holds_a_cpu_slot(window, workspace):
    from backend.runs import create_run

    runner = window.queue.runner
    hand = create_run(workspace, ExperimentConfig.from_dict(quick_small(runtime={"device": "cpu"})))
    state = window.manager._add(hand)
    state.live = True  # as if Launch had started its trainer
    started = []
    runner.runStarted.connect(started.append)
    queued = runner.add(ExperimentConfig.from_dict(quick_small()), "cpu")
    assert started == [] and RunQueue(workspace).get(queued).state == "queued"  # the one CPU slot is taken
    assert runner._hand_launched_devices(runner.slots()) == ["cpu"]
    runner.set_autostart(False)
    state.live = False
