"""End to end through the GUI: launch real trainer processes (QProcess), watch, stop, resume, kill."""

from __future__ import annotations

import json

import pytest
from PySide6.QtCore import Qt

from backend.runs import checkpoint_path, summarize_run
from workbench.app import main

from .conftest import quick_small, write_fake_run

pytestmark = pytest.mark.slow
TIMEOUT_MS = 90000  # generous: the CI machine may be busy; runs take ~10-30 s


def loss_points(panel) -> int:
    """Number of points on the dashboard's loss curve."""
    curves = panel.dashboard.curves("loss")
    return max((0 if c.xData is None else len(c.xData) for c in curves), default=0)


def launch(window, qtbot, **overrides):
    window.config_model.set_data(quick_small(**overrides))
    assert window.editor.launch_button.isEnabled(), window.config_model.errors
    qtbot.mouseClick(window.editor.launch_button, Qt.MouseButton.LeftButton)
    panel = window.current_panel()
    assert panel is not None
    return panel


def test_launch_trains_to_the_end_and_the_browser_shows_it(window, qtbot):
    panel = launch(window, qtbot)
    state = panel.state
    assert state.live and (state.run_dir / "config.json").exists()
    assert json.loads((state.run_dir / "config.json").read_text())["config"]["runtime"]["device"] == "cpu"
    qtbot.waitUntil(lambda: loss_points(panel) > 0, timeout=TIMEOUT_MS)
    assert state.total_steps == 8 and state.epochs == 2
    qtbot.waitUntil(lambda: state.state == "finished" and not state.live, timeout=TIMEOUT_MS)
    assert state.progress() == 1.0
    assert loss_points(panel) == 8
    assert "knn_top1" in state.latest
    window.browser.refresh()
    qtbot.waitUntil(lambda: (window.browser.view_of(state.run_dir) or {}).get("state") == "finished",
                    timeout=60000)
    assert summarize_run(state.run_dir).state == "finished"  # the files say so too
    assert "finished" in panel.badge.text()
    assert not panel.stop_button.isEnabled()


def test_stop_mid_way_then_resume_to_the_end(window, qtbot):
    panel = launch(window, qtbot, schedule={"epochs": 3}, eval={"knn_every_epochs": 0})
    state = panel.state
    qtbot.waitUntil(lambda: state.step >= 2, timeout=TIMEOUT_MS)
    qtbot.mouseClick(panel.stop_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not state.live, timeout=TIMEOUT_MS)
    assert state.state == "stopped", state.message
    assert 2 <= state.step < 12
    assert checkpoint_path(state.run_dir).exists() and state.resumable
    assert panel.resume_button.isEnabled()
    stopped_at = state.step
    qtbot.mouseClick(panel.resume_button, Qt.MouseButton.LeftButton)
    assert state.live
    qtbot.waitUntil(lambda: state.state == "finished" and not state.live, timeout=TIMEOUT_MS)
    assert state.step == 12 > stopped_at
    assert window.current_panel() is panel  # same tab, same dashboard


def test_killed_trainer_shows_crashed_and_the_gui_keeps_working(window, qtbot):
    panel = launch(window, qtbot, schedule={"epochs": 20}, eval={"knn_every_epochs": 0})
    state = panel.state
    qtbot.waitUntil(lambda: state.step >= 1, timeout=TIMEOUT_MS)
    window.manager.controller(state.run_dir).process.kill()
    qtbot.waitUntil(lambda: not state.live, timeout=TIMEOUT_MS)
    assert state.state == "crashed"
    assert "killed or crashed" in state.message
    assert "crashed" in panel.message.text()
    # the GUI still works: the editor validates, the browser lists the run, another run launches
    window.editor.form.editors["optim.lr"].input.setValue(0.0)
    assert not window.editor.launch_button.isEnabled()
    window.browser.refresh()
    qtbot.waitUntil(lambda: (window.browser.view_of(state.run_dir) or {}).get("state") == "crashed",
                    timeout=60000)
    second = launch(window, qtbot)
    assert second is not panel and second.state.live
    second_state = second.state
    window.manager.shutdown(20000)
    assert second_state.state in ("stopped", "finished")


def test_data_error_is_shown_on_the_run(window, qtbot, tmp_path):
    # The editor's Launch refuses a missing folder before any trainer starts (tests/faults); a run
    # started without that check (window.launch) shows the trainer's own data error.
    from backend.config import ExperimentConfig
    cfg = ExperimentConfig.from_dict(quick_small(data={"source": f"imagefolder:{tmp_path / 'no-such-folder'}"}))
    panel = window.launch(cfg, "cpu")
    state = panel.state
    qtbot.waitUntil(lambda: not state.live, timeout=TIMEOUT_MS)
    assert state.state == "error"
    assert state.message.startswith("data error:")
    assert "no-such-folder" in state.message
    assert "error" in panel.message.text()


def test_config_error_exit_code_2(window, qtbot, workspace):
    run_dir = write_fake_run(workspace, "stopped", checkpoint=False)
    payload = json.loads((run_dir / "config.json").read_text())
    payload["config"]["optim"]["lr"] = -1.0
    (run_dir / "config.json").write_text(json.dumps(payload))
    (run_dir / "events.jsonl").unlink()
    state = window.manager.open(run_dir)
    window.manager.start(state, resume=False)
    qtbot.waitUntil(lambda: not state.live, timeout=TIMEOUT_MS)
    assert state.state == "error" and state.message.startswith("config error:")
    assert "optim.lr" in state.message


def test_screenshot_of_a_run(tmp_path, workspace, qtbot):
    run_dir = write_fake_run(workspace, "finished")
    shot = tmp_path / "shot.png"
    assert main(["--screenshot", str(shot), "--run-dir", str(run_dir)]) == 0
    assert shot.stat().st_size > 10000
    assert main(["--screenshot", str(shot), "--run-dir", str(tmp_path / "nope")]) == 2


def test_exit_outcomes_without_a_process(tmp_path):
    """How a trainer's end is read: error events and exit codes, crashes, clean stops."""
    from workbench.process import TrainerController
    from workbench.run_state import RunState

    ctl = TrainerController(RunState(tmp_path / "run"))
    ctl.handle_stdout([b'{"kind": "status", "time": 1, "state": "running", "message": "", "total_steps": 10}',
                        b"some stray print", b'{"kind": "metric", "time": 2, "step": 3, "epoch": 0, '
                        b'"name": "loss", "value": 1.5}'])
    assert ctl.state.total_steps == 10 and ctl.state.step == 3 and ctl.state.latest["loss"] == 1.5
    assert ctl.outcome(0, crashed=False)[0] == "stopped"  # exit 0 without a terminal status
    ctl.handle_stderr([b"Traceback (most recent call last):", b"RuntimeError: boom"])
    state, message = ctl.outcome(1, crashed=False)
    assert state == "crashed" and "RuntimeError: boom" in message
    assert ctl.outcome(-9, crashed=True)[0] == "crashed"
    ctl.handle_stdout([b'{"kind": "error", "time": 3, "message": "no images in /x", "exit_code": 3}'])
    assert ctl.outcome(3, crashed=False) == ("error", "data error: no images in /x")
    ctl.handle_stdout([b'{"kind": "status", "time": 4, "state": "finished", "message": "done"}'])
    ctl.state.ledger.last_error = None  # as for a new process
    assert ctl.outcome(0, crashed=False) == ("finished", "done")


def test_workspace_is_remembered(qtbot, tmp_path):
    from workbench import settings
    from workbench.main_window import MainWindow

    first = MainWindow(tmp_path / "a", restore_layout=False)
    qtbot.addWidget(first)
    first.set_workspace(tmp_path / "b")
    assert settings.workspace() == tmp_path / "b"
    first.confirm_close = False
    first.close()
    second = MainWindow(restore_layout=True)
    qtbot.addWidget(second)
    assert second.workspace == tmp_path / "b"
    assert "b" in second.workspace_label.text()
    second.confirm_close = False
    second.close()


def test_menus_and_docks(window):
    menus = {a.text().replace("&", ""): a.menu() for a in window.menuBar().actions()}
    assert list(menus) == ["File", "Run", "Inspect", "View", "Help"]
    texts = lambda m: [a.text().replace("&", "") for a in m.actions() if a.text()]  # noqa: E731
    assert {"New config", "Open config…", "Save config as…", "Open workspace…", "Open run folder…",
            "Quit"} <= set(texts(menus["File"]))
    assert texts(menus["Run"]) == ["Launch", "Add to queue", "Sweep…", "Show sweeps", "Stop", "Pause", "Resume",
                                   "Checkpoint now"]
    assert set(texts(menus["View"])) == {"Experiment", "Augmentation preview", "Runs", "Log", "Queue"}
    toggle = next(a for a in menus["View"].actions() if a.text() == "Log")
    toggle.trigger()
    assert window.log_dock.isHidden()
    assert window.launch_action.isEnabled() and not window.stop_action.isEnabled()


def test_main_runs_the_event_loop(qtbot, workspace):
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    QTimer.singleShot(300, QApplication.instance().quit)
    assert main(["--workspace", str(workspace)]) == 0
    # The window main() made outlives its event loop here (a real process would exit): close it
    # so its timers and workers do not run on into the next tests.
    from workbench.main_window import MainWindow
    for widget in QApplication.topLevelWidgets():
        if isinstance(widget, MainWindow):
            widget.confirm_close = False
            widget.manager.shutdown(5000)
            widget.close()
            widget.deleteLater()
    qtbot.wait(50)
