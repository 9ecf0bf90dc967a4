"""The runs browser and reopening runs from their directories alone."""

from __future__ import annotations

import pytest

from workbench import workers
from workbench.run_manager import RunManager
from workbench.run_panel import ComparePanel, RunPanel
from workbench.runs_browser import COLUMNS, RunsBrowser, scan_runs
from workbench.workers import TaskContext

from .conftest import write_fake_run


@pytest.fixture
def runs(workspace):
    return {state: write_fake_run(workspace, state, name=state, checkpoint=state != "finished", knn=0.6)
            for state in ("finished", "stopped", "error", "interrupted")}


@pytest.fixture
def browser(qtbot, workspace, runs):
    workers.set_synchronous(True)
    widget = RunsBrowser(workspace, RunManager(workspace))
    qtbot.addWidget(widget)
    widget.show()
    return widget


def cell(browser, run_dir, column: str) -> str:
    row = browser.model.row_of(run_dir)
    return browser.model.index(row, COLUMNS.index(column)).data()


def test_lists_every_run_with_its_status(browser, runs):
    assert browser.model.rowCount() == 4
    for state, run_dir in runs.items():
        assert cell(browser, run_dir, "Status") == state
        assert cell(browser, run_dir, "Method") == "simclr"
        assert cell(browser, run_dir, "Backbone") == "tiny_cnn"
        assert cell(browser, run_dir, "Data") == "synthetic"
    assert cell(browser, runs["finished"], "Epoch") == "3/3"
    assert cell(browser, runs["finished"], "Best kNN") == "60.0 %"
    assert cell(browser, runs["stopped"], "Epoch") == "2/3"
    assert browser.empty_label.isHidden()


def test_filter_and_sort(browser, runs):
    browser.filter_edit.setText("interrupted")
    assert browser.proxy.rowCount() == 1
    browser.filter_edit.clear()
    assert browser.proxy.rowCount() == 4


def test_selection_actions(browser, runs, qtbot):
    browser.select([runs["finished"], runs["stopped"]])
    assert browser.compare_button.isEnabled() and not browser.resume_button.isEnabled()
    with qtbot.waitSignal(browser.compareRequested) as blocker:
        browser.compare_button.click()
    assert sorted(blocker.args[0]) == sorted([runs["finished"], runs["stopped"]])
    for state, resumable in (("stopped", True), ("interrupted", True), ("finished", False)):
        browser.select([runs[state]])
        assert browser.resume_button.isEnabled() is resumable, state
    browser.select([runs["stopped"]])
    with qtbot.waitSignal(browser.resumeRequested) as blocker:
        browser.resume_button.click()
    assert blocker.args[0] == runs["stopped"]
    with qtbot.waitSignal(browser.openRequested) as blocker:
        browser.open_selected()
    assert blocker.args[0] == runs["stopped"]


def test_refresh_picks_up_new_runs_and_rereads_only_changed_ones(browser, workspace, runs):
    ctx = TaskContext(lambda *_: None)
    summaries, cache = scan_runs(ctx, workspace, {})
    again, _ = scan_runs(ctx, workspace, cache)
    assert all(a is b for a, b in zip(summaries, again))  # nothing changed: nothing re-read
    new = write_fake_run(workspace, "finished", name="new")
    browser.refresh()
    assert browser.model.rowCount() == 5 and browser.model.row_of(new) >= 0


def test_empty_workspace_says_how_to_start(qtbot, tmp_path):
    workers.set_synchronous(True)
    widget = RunsBrowser(tmp_path / "empty", None)
    qtbot.addWidget(widget)
    widget.show()
    assert "No runs yet" in widget.empty_label.text() and not widget.empty_label.isHidden()


def test_window_reopens_a_run_from_its_directory(window, qtbot, runs):
    panel = window.open_run(runs["finished"])
    assert isinstance(panel, RunPanel)
    assert window.current_panel() is panel
    curves = panel.dashboard.curves("loss")
    assert curves and len(curves[0].xData) == 15
    assert panel.state.state == "finished" and panel.progress.value() == 1000
    assert window.open_run(runs["finished"]) is panel  # one tab per run
    crashed = window.open_run(runs["error"])
    assert "data error" in crashed.message.text()
    assert window.open_run(runs["finished"].parent / "nope") is None  # reported, not raised


def test_window_compares_selected_runs(window, qtbot, runs):
    workers.wait_all(30)  # the window's start-up tasks must not hold the pool's two threads
    workers.set_synchronous(True)  # then scan inline: the point here is comparing, not threading
    window.browser.refresh()
    qtbot.waitUntil(lambda: window.browser.model.rowCount() == 4, timeout=60000)
    window.browser.select([runs["finished"], runs["stopped"]])
    window.browser.compare_button.click()
    panel = window.tabs.currentWidget()
    assert isinstance(panel, ComparePanel)
    assert len(panel.dashboard.curves("loss")) == 2
    window.close_tab(window.tabs.currentIndex())


def test_live_rows_come_from_the_managers_ledgers_not_the_files(browser, runs):
    run_dir = runs["interrupted"]
    state = browser.manager.open(run_dir)
    state.set_live(True)  # as when its trainer runs in this GUI
    state.apply_events([{"kind": "status", "time": 1.0, "state": "resumed", "message": "resumed", "step": 5},
                        {"kind": "metric", "time": 2.0, "step": 6, "epoch": 1, "name": "loss", "value": 1.0}])
    browser.refresh()
    summary = browser.summaries()[browser.model.row_of(run_dir)]
    assert (summary.state, summary.step) == ("running", 6)  # the file says interrupted at step 10
    assert cell(browser, run_dir, "Status") == "running" and cell(browser, run_dir, "Epoch") == "2/3"
    state.set_live(False)
    state.set_state("stopped", "stopped")
    browser.refresh()  # no longer live: its files are read (once)
    assert browser.summaries()[browser.model.row_of(run_dir)].state == "interrupted"
    assert cell(browser, run_dir, "Status") == "stopped"  # the session's state still wins in the view


def test_closing_a_run_tab_keeps_its_series_with_the_run(window, runs):
    panel = window.open_run(runs["finished"])
    ledger = panel.state.ledger
    window.close_tab(window.tabs.indexOf(panel))
    again = window.open_run(runs["finished"])
    assert again is not panel and again.state.ledger is ledger  # nothing re-read
    assert len(again.dashboard.curves("loss")[0].xData) == 15
    assert again.progress.format() == "epoch 3/3 · step 15/15"


def test_a_run_locked_by_another_live_process_is_in_use_and_not_resumable(browser, runs):
    import subprocess
    import sys

    import json
    import socket

    from backend.run_lock import lock_path
    stopped = runs["stopped"]
    browser.select([stopped])
    assert browser.resume_button.isEnabled()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock_path(stopped).write_text(json.dumps({"pid": holder.pid, "host": socket.gethostname(),
                                                  "started": 1.0, "command": "sslwb train", "token": "x",
                                                  "boot_id": "", "proc_start": 0}))
        browser.refresh()
        assert cell(browser, stopped, "Status") == "in use"
        tip = browser.model.index(browser.model.row_of(stopped), 1).data(3)  # ToolTipRole
        assert f"in use by PID {holder.pid}" in tip
        browser.select([stopped])
        assert not browser.resume_button.isEnabled()
    finally:
        holder.kill()
        holder.wait()
    browser.refresh()                           # the holder died: the run is free again
    assert cell(browser, stopped, "Status") == "stopped"
    browser.select([stopped])
    assert browser.resume_button.isEnabled()
