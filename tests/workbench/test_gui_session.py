"""Issues from a new user's first session: toolbar/menu enabling, status bar wording, log
following, shortcuts, documentation, restored tabs and geometry, checkpoint while paused."""

from __future__ import annotations

from PySide6.QtCore import QRect
from PySide6.QtGui import QGuiApplication

from .conftest import write_fake_run


def _events(n: int, start: int = 0) -> list[dict]:
    return [{"kind": "log", "time": 0.0, "message": f"line {i}"} for i in range(start, start + n)]


def test_reopened_stopped_run_enables_resume_in_toolbar_and_menu(window, workspace):
    run_dir = write_fake_run(workspace, "stopped")
    panel = window.open_run(run_dir)
    assert panel.resume_button.isEnabled()
    assert window.resume_action.isEnabled()  # was greyed out until an unrelated edit
    assert not window.stop_action.isEnabled() and not window.pause_action.isEnabled()
    finished = window.open_run(write_fake_run(workspace, "finished", checkpoint=False))
    assert not window.resume_action.isEnabled()
    window.tabs.setCurrentWidget(panel)  # tab switch
    assert window.resume_action.isEnabled()
    window.close_tab(window.tabs.indexOf(panel))
    assert window.current_panel() is finished and not window.resume_action.isEnabled()
    window.close_tab(window.tabs.indexOf(finished))
    assert not window.resume_action.isEnabled()


def test_state_change_updates_the_actions(window, workspace):
    panel = window.open_run(write_fake_run(workspace, "stopped"))
    panel.state.live = True
    panel.state.set_state("paused", "paused at step 3")
    assert window.resume_action.isEnabled() and window.checkpoint_action.isEnabled()
    assert not window.pause_action.isEnabled()
    assert window.live_label.text() == "1 run paused"
    panel.state.set_state("running", "resumed")
    assert window.pause_action.isEnabled() and not window.resume_action.isEnabled()
    assert window.live_label.text() == "1 run training"
    panel.state.live = False
    panel.state.set_state("stopped", "stopped")


def test_live_summary_wording():
    from workbench.main_window import live_summary
    assert live_summary([]) == ""
    assert live_summary(["running"]) == "1 run training"
    assert live_summary(["paused"]) == "1 run paused"
    assert live_summary(["running", "starting", "paused"]) == "2 training, 1 paused"


def test_run_log_pane_follows_new_lines_after_being_filled_hidden(qtbot):
    from PySide6.QtWidgets import QApplication

    from workbench.log_view import RunLogPane

    def settle():
        QApplication.processEvents()  # the pane lays its lines out lazily
    pane = RunLogPane(5000)
    qtbot.addWidget(pane)
    pane.append_events(_events(300))  # a reopened run: history arrives before the pane is shown
    pane.resize(400, 300)
    pane.show()
    settle()
    settle()
    bar = pane.verticalScrollBar()
    assert bar.value() == bar.maximum()
    pane.append_events(_events(3, 300))
    settle()
    assert bar.value() == bar.maximum()
    pane.resize(400, 100)  # the splitter gives the pane less room
    settle()
    pane.append_events(_events(1, 303))
    settle()
    assert bar.value() == bar.maximum()
    bar.setValue(10)  # the user scrolled up to read: stay there
    settle()
    pane.append_events(_events(1, 304))
    settle()
    assert bar.value() == 10
    bar.setValue(bar.maximum())  # back at the bottom: follow again
    settle()
    pane.append_events(_events(1, 305))
    settle()
    assert bar.value() == bar.maximum()


def test_run_actions_have_shortcuts_shown_in_the_menu(window):
    for action in (window.launch_action, window.stop_action, window.pause_action, window.resume_action,
                   window.checkpoint_action):
        assert not action.shortcut().isEmpty(), action.text()
    shortcuts = [a.shortcut().toString() for a in window.findChildren(type(window.pause_action))
                 if not a.shortcut().isEmpty()]
    assert len(shortcuts) == len(set(shortcuts)), "two actions share a shortcut"
    run_menu = next(a.menu() for a in window.menuBar().actions() if a.text() == "&Run")
    assert window.pause_action in run_menu.actions() and window.checkpoint_action in run_menu.actions()


def test_help_documentation_opens_the_shipped_readme(window, monkeypatch):
    from workbench import window_tools
    opened = []
    monkeypatch.setattr(window_tools.QDesktopServices, "openUrl", lambda url: opened.append(url) or True)
    help_menu = next(a.menu() for a in window.menuBar().actions() if a.text() == "&Help")
    assert window.docs_action in help_menu.actions()
    window.docs_action.trigger()
    assert len(opened) == 1 and opened[0].isLocalFile()
    assert opened[0].toLocalFile().endswith("README.md")


def test_open_run_tabs_are_restored(qtbot, workspace):
    from workbench.main_window import MainWindow
    a, b = write_fake_run(workspace, "finished"), write_fake_run(workspace, "stopped")
    first = MainWindow(workspace, restore_layout=False)
    qtbot.addWidget(first)
    first.open_run(a)
    first.open_run(b)
    first.close()
    second = MainWindow(workspace, restore_layout=True)
    qtbot.addWidget(second)
    assert [second.tabs.widget(i).run_dir for i in range(second.tabs.count())] == [a, b]
    assert second.resume_action.isEnabled()  # b (stopped, checkpoint) is in front
    second.close()


def test_oversized_restored_geometry_is_clamped_to_the_screen(qtbot, workspace):
    from workbench import settings
    from workbench.main_window import MainWindow
    avail: QRect = QGuiApplication.primaryScreen().availableGeometry()
    big = MainWindow(workspace, restore_layout=False)
    qtbot.addWidget(big)
    big.setGeometry(avail.x() + 50, avail.y() + 50, avail.width() * 2, avail.height() * 2)
    settings.save_window_state(big.saveGeometry(), big.saveState())
    big.close()
    win = MainWindow(workspace, restore_layout=True)
    qtbot.addWidget(win)
    frame = win.frameGeometry()
    assert avail.contains(frame), (frame, avail)
    win.close()


def test_checkpoint_while_paused_says_when_it_is_written(window, workspace, monkeypatch):
    from workbench.main_window import PAUSED_CHECKPOINT_NOTE
    panel = window.open_run(write_fake_run(workspace, "stopped"))
    panel.state.live = True
    panel.state.set_state("paused", "paused at step 3")
    monkeypatch.setattr(window.manager, "command", lambda run_dir, cmd: True)
    panel.checkpoint_button.click()
    assert window.statusBar().currentMessage() == PAUSED_CHECKPOINT_NOTE
    panel.state.live = False
    panel.state.set_state("stopped", "stopped")


def test_no_plot_axis_rescales_its_ticks_with_an_si_prefix(qtbot):
    import pyqtgraph as pg

    from workbench.dashboard import RunDashboard

    from .test_dashboard import metric
    dash = RunDashboard()
    qtbot.addWidget(dash)
    dash.resize(1000, 700)
    events = [metric(name, 0.001 * step, step) for step in range(1, 20)
              for name in ("alignment", "uniformity", "loss", "custom/tiny")]
    dash.add_events(events)
    qtbot.waitUntil(lambda: bool(dash.curves("loss")) and dash.curves("custom/tiny") != [], timeout=5000)
    axes = [item.getAxis(side) for grid in (dash.grid, dash.other_grid) for item in grid.ci.items
            if isinstance(item, pg.PlotItem) for side in ("left", "bottom")]
    assert len(axes) >= 8
    assert not [a for a in axes if a.autoSIPrefix], "an axis would show a clipped '(x0.001)' unit"


def test_runs_list_shows_the_users_name_first_and_keeps_the_folder_visible(window, workspace, qtbot):
    from PySide6.QtCore import Qt

    from workbench.runs_model import run_label
    a = write_fake_run(workspace, "finished", name="baseline")
    b = write_fake_run(workspace, "finished", name="strong aug")
    assert run_label("strong aug", b.name) == f"strong aug · {b.name[:-len('-strong-aug')]}"
    assert run_label("", a.name) == a.name
    window.browser.refresh()
    model = window.browser.table.model()
    qtbot.waitUntil(lambda: model.rowCount() == 2, timeout=5000)
    shown = sorted(model.index(r, 0).data() for r in range(2))
    assert shown[0].startswith("baseline · ") and shown[1].startswith("strong aug · ")
    tips = [model.index(r, 0).data(Qt.ItemDataRole.ToolTipRole) for r in range(2)]
    assert all("id: " in t for t in tips)
    from PySide6.QtWidgets import QStyleOptionViewItem
    option = QStyleOptionViewItem()
    window.browser.table.itemDelegateForColumn(4).initStyleOption(option, model.index(0, 4))
    assert option.textElideMode == Qt.TextElideMode.ElideLeft
    assert window.open_run(a).title().startswith("baseline · ")  # the tab too


def test_quit_question_offers_stop_keep_and_cancel(window, qtbot):
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication, QMessageBox

    def answer(text):
        def click():
            box = QApplication.activeModalWidget()
            assert isinstance(box, QMessageBox)
            labels = [b.text() for b in box.buttons()]
            assert "Stop them and quit" in labels and "Keep training in the background" in labels
            next(b for b in box.buttons() if b.text() == text).click()
        QTimer.singleShot(50, click)
    answer("Keep training in the background")
    assert window.ask_close(2) == "keep"
    answer("Stop them and quit")
    assert window.ask_close(1) == "stop"
    answer("Cancel")
    assert window.ask_close(1) == "cancel"
