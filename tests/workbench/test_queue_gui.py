"""The run queue and sweeps in the GUI, with real trainer processes: queued runs start one after
the other, a 2x2 sweep from the editor's Sweep… runs through the queue into the Sweeps tab's
table and heatmap, and the queue outlives the window."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QApplication

from backend.run_meta import read_meta
from backend.run_queue import RunQueue
from backend.runs import summarize_run
from workbench.run_manager import run_key

from .conftest import quick_small

pytestmark = pytest.mark.slow
TIMEOUT_MS = 120000  # per run, generous: the machine may be busy
# One epoch of 2 steps, then the final kNN: a few seconds of CPU each.
ONE_EPOCH = {"schedule": {"epochs": 1}, "data": {"synthetic_train_size": 64, "synthetic_test_size": 64},
             "optim": {"batch_size": 32}, "eval": {"probe_batch_size": 32}}


def fast_queue(window, cpu_runs: int = 1):
    """The window's queue runner, polling often, ``cpu_runs`` at once."""
    runner = window.queue.runner
    runner.timer.setInterval(200)
    window.queue.view.cpu_spin.setValue(cpu_runs)
    assert runner.max_cpu_runs == cpu_runs
    return runner


def queue_from_editor(window, qtbot, **overrides) -> str:
    window.config_model.set_data(quick_small(**overrides))
    assert window.editor.queue_button.isEnabled(), window.config_model.errors
    before = {e.run_dir for e in RunQueue(window.workspace).entries()}
    qtbot.mouseClick(window.editor.queue_button, Qt.MouseButton.LeftButton)
    added = [e.run_dir for e in RunQueue(window.workspace).entries() if e.run_dir not in before]
    assert len(added) == 1
    return added[0]


def states(runner) -> dict:
    return {e.run_dir: e.state for e in runner.queue.entries()}


def test_two_queued_runs_start_one_after_the_other(window, qtbot):
    runner = fast_queue(window, cpu_runs=1)
    started = []  # (run dir, queue states at that moment)
    runner.runStarted.connect(lambda d: started.append((d, states(runner))))
    first = queue_from_editor(window, qtbot, name="first", **ONE_EPOCH)
    second = queue_from_editor(window, qtbot, name="second", **ONE_EPOCH)
    assert [d for d, _ in started] == [first]  # one CPU slot: the first took it
    state_a = window.manager.state(first)
    assert state_a is not None and state_a.live and run_key(first) in window.panels  # its tab, as a launch
    qtbot.waitUntil(lambda: state_a.step >= 1, timeout=TIMEOUT_MS)
    assert states(runner)[second] == "queued" and window.manager.state(second) is None
    assert [text for _, text in window.queue.view.rows()][1] == "queued"

    qtbot.waitUntil(lambda: set(states(runner).values()) == {"done"}, timeout=2 * TIMEOUT_MS)
    assert [d for d, _ in started] == [first, second]
    assert started[1][1][first] == "done"  # the second started once the first had ended
    a, b = runner.queue.entries()
    assert b.started >= a.finished and (a.exit_code, b.exit_code) == (0, 0) and a.assigned == "cpu"
    for run_dir in (first, second):
        assert summarize_run(run_dir).state == "finished"
        panel = window.panels[run_key(run_dir)]
        assert panel.state.state == "finished" and "knn_top1" in panel.state.latest
    qtbot.waitUntil(lambda: [t for _, t in window.queue.view.rows()] == ["done (finished)"] * 2, timeout=5000)


def test_a_2x2_sweep_from_the_editor_runs_through_the_queue(window, qtbot):
    runner = fast_queue(window, cpu_runs=2)   # two at a time: each run is mostly its process start-up
    window.config_model.set_data(quick_small(**ONE_EPOCH))
    problems = []

    def fill_the_dialog():
        dialog = QApplication.activeModalWidget()
        try:
            dialog.set_mode("grid")
            dialog.name_edit.setText("t-lr")
            dialog.set_fields([("method.temperature", "0.2, 0.5"), ("optim.lr", "0.05, 0.1")])
            if dialog.summary.text() != "4 runs, queued on cpu":
                problems.append(dialog.summary.text())
            qtbot.mouseClick(dialog.ok_button, Qt.MouseButton.LeftButton)
        finally:
            if dialog.isVisible():
                dialog.reject()

    QTimer.singleShot(200, fill_the_dialog)
    qtbot.mouseClick(window.editor.sweep_button, Qt.MouseButton.LeftButton)  # returns when it closes
    assert not problems
    view = window.queue.sweep_view
    assert view is not None and window.tabs.currentWidget() is view
    sweep = view.sweep
    assert sweep is not None and sweep.name == "t-lr" and len(sweep.run_dirs) == 4
    metas = [read_meta(d) for d in sweep.run_dirs]
    assert all(f"sweep:{sweep.id}" in m["tags"] for m in metas)
    assert [m["sweep"]["point"] for m in metas] == [
        {"method.temperature": t, "optim.lr": lr} for t in (0.2, 0.5) for lr in (0.05, 0.1)]
    assert {e.run_dir for e in runner.queue.entries()} == {str(d) for d in sweep.run_dirs}
    assert view.table.rowCount() == 4 and view.plot.mode == "heatmap"
    assert view.plot.matrix.shape == (2, 2) and np.isnan(view.plot.matrix).all()  # blank until a run ends

    first = window.manager.state(sweep.run_dirs[0])
    qtbot.waitUntil(lambda: first is not None and first.live and first.step >= 1, timeout=TIMEOUT_MS)
    view.refresh(force=True)
    assert view.cell_text(0, "state") == first.state  # training, from the live run (not "interrupted")
    qtbot.waitUntil(lambda: set(states(runner).values()) == {"done"}, timeout=4 * TIMEOUT_MS)
    view.refresh(force=True)
    assert view.table.rowCount() == 4
    for row in range(4):
        assert view.cell_text(row, "state") == "finished"
        knn = float(view.cell_text(row, "final kNN"))
        assert 0.0 <= knn <= 1.0
        assert view.cell_text(row, "linear probe") == "—"  # no probe was run
    assert [view.cell_text(r, "run") for r in range(4)] == [f"t-lr-{i}" for i in range(4)]
    assert view.plot.matrix.shape == (2, 2) and np.isfinite(view.plot.matrix).all()
    assert sorted(view.plot.matrix.ravel()) == pytest.approx(sorted(r.knn for r in view.rows))
    assert all(math.isfinite(r.knn) for r in view.rows)


def test_the_queue_survives_closing_the_window(qtbot, workspace):
    from workbench.main_window import MainWindow

    win = MainWindow(workspace, restore_layout=False)
    win.confirm_close = False
    qtbot.addWidget(win)
    win.show()
    win.queue.view.autostart_box.setChecked(False)  # keep them queued
    runs = [queue_from_editor(win, qtbot, name=f"q{i}") for i in range(3)]
    view = win.queue.view
    assert [d for d, _ in view.rows()] == runs and {t for _, t in view.rows()} == {"queued"}
    view.select_run(runs[2])
    qtbot.mouseClick(view.up_button, Qt.MouseButton.LeftButton)  # the last one goes sooner
    order = [runs[0], runs[2], runs[1]]
    assert [d for d, _ in view.rows()] == order
    win.close()

    again = MainWindow(workspace, restore_layout=False)
    again.confirm_close = False
    qtbot.addWidget(again)
    again.show()
    view = again.queue.view
    assert not view.autostart_box.isChecked()  # remembered too
    qtbot.waitUntil(lambda: len(view.rows()) == 3, timeout=5000)
    assert [d for d, _ in view.rows()] == order and {t for _, t in view.rows()} == {"queued"}
    view.select_run(runs[1])
    assert view.remove_button.isEnabled()
    qtbot.mouseClick(view.remove_button, Qt.MouseButton.LeftButton)
    assert [d for d, _ in view.rows()] == order[:2]
    assert [e.run_dir for e in RunQueue(workspace).entries()] == order[:2]
    again.close()


def test_a_run_stopped_by_closing_the_window_is_queued_again(qtbot, workspace):
    from workbench.main_window import MainWindow

    win = MainWindow(workspace, restore_layout=False)
    win.confirm_close = False
    qtbot.addWidget(win)
    win.show()
    fast_queue(win)
    run_dir = queue_from_editor(win, qtbot, name="long", schedule={"epochs": 20})
    state = win.manager.state(run_dir)
    qtbot.waitUntil(lambda: state.step >= 1, timeout=TIMEOUT_MS)
    win.close()  # stops the trainer (checkpoint): the run stays in the queue
    assert RunQueue(workspace).get(run_dir).state == "started"

    win.queue.runner.set_autostart(False)  # the setting the next window reads
    again = MainWindow(workspace, restore_layout=False)
    again.confirm_close = False
    qtbot.addWidget(again)
    again.show()
    qtbot.waitUntil(lambda: again.queue.view.rows() == [(run_dir, "queued")], timeout=10000)
    entry = RunQueue(workspace).get(run_dir)
    assert entry.pid is None and summarize_run(run_dir).state == "stopped"
    again.close()
