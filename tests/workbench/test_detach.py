"""Quit with "keep training in the background": a real trainer outlives its window and shows
live again when the workbench reopens; Stop then reaches it as SIGTERM."""

from __future__ import annotations

import os
import time

import pytest

from backend.events import read_events
from backend.runs import EVENTS_FILE, checkpoint_path
from workbench.process import DETACHED_FILE

from .test_launch import TIMEOUT_MS, launch

pytestmark = pytest.mark.slow


def _alive(pid: int) -> bool:
    try:
        os.waitpid(pid, os.WNOHANG)  # reap it if it was our child and has exited
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_keep_training_in_the_background_then_reattach_and_stop(qtbot, workspace, monkeypatch):
    from workbench.main_window import MainWindow
    first = MainWindow(workspace, restore_layout=False)
    qtbot.addWidget(first)
    first.show()
    panel = launch(first, qtbot, schedule={"epochs": 400}, eval={"knn_every_epochs": 0})
    run_dir, state = panel.run_dir, panel.state
    qtbot.waitUntil(lambda: state.step >= 2, timeout=TIMEOUT_MS)
    monkeypatch.setattr(first, "ask_close", lambda n: "keep")
    pid = None
    try:
        assert first.close()
        pid = int(__import__("json").loads((run_dir / DETACHED_FILE).read_text())["pid"])
        step_at_close = max(e.get("step", 0) for e in read_events(run_dir / EVENTS_FILE))
        time.sleep(3)  # the trainer keeps training with no workbench reading its output
        assert _alive(pid), "the kept trainer died when its window closed"

        second = MainWindow(workspace, restore_layout=True)  # reopens the run's tab
        qtbot.addWidget(second)
        second.show()
        reopened = second.current_panel()
        assert reopened is not None and reopened.run_dir == run_dir
        live = reopened.state
        assert live.live and live.state == "running", (live.state, live.message)
        assert second.stop_action.isEnabled() and second.live_label.text() == "1 run training"
        assert not second.pause_action.isEnabled() and not reopened.pause_button.isEnabled()  # Stop only
        qtbot.waitUntil(lambda: live.step > step_at_close, timeout=TIMEOUT_MS)  # tailing its events
        second.stop_action.trigger()  # SIGTERM: checkpoint and exit 0
        qtbot.waitUntil(lambda: not live.live, timeout=TIMEOUT_MS)
        assert live.state == "stopped", (live.state, live.message)
        assert checkpoint_path(run_dir).exists() and live.resumable
        assert not (run_dir / DETACHED_FILE).exists()
        assert not _alive(pid)
        second.confirm_close = False
        second.close()
    finally:
        if pid is not None and _alive(pid):
            os.kill(pid, 9)
