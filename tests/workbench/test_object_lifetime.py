"""What a long session must not keep: a closed run or comparison tab's dashboard (and its plots'
export menus), a closed Inspect window's views, an exited trainer's controller with its QProcess
and watchdog QTimer (the leaks the soak test found; the soak itself runs under ``long``)."""

from __future__ import annotations

import json
import weakref

from PySide6.QtCore import QTimer

from .conftest import write_fake_run
from .soak_probe import settle


def test_closed_run_and_compare_tabs_free_their_dashboards(window, workspace):
    a, b = write_fake_run(workspace, "finished"), write_fake_run(workspace, "stopped")
    gone = []
    for _ in range(2):
        for panel in (window.open_run(a), window.compare_runs([a, b])):
            tools = next(iter(panel.dashboard.tools.values()))
            assert tools.menu.parent() is panel.dashboard     # the export menu dies with its plot
            gone += [weakref.ref(panel), weakref.ref(panel.dashboard), weakref.ref(tools)]
            window.close_tab(window.tabs.indexOf(panel))
        del panel, tools
        settle()
    assert [r() for r in gone] == [None] * len(gone)
    assert window.manager.state(a) is not None                # the run's state and ledger stay


def test_closed_inspect_window_is_freed(window, workspace, qtbot):
    run = write_fake_run(workspace, "finished")
    inspect = window.inspect_run(run)
    refs = [weakref.ref(inspect), weakref.ref(inspect.embeddings), weakref.ref(inspect.embeddings.panels[0])]
    assert all(p.tools.menu.parent() is p for p in inspect.embeddings.panels)
    inspect.close()
    del inspect
    qtbot.waitUntil(lambda: not window.inspect_windows, timeout=5000)
    settle()
    assert [r() for r in refs] == [None, None, None]


def test_an_exited_trainers_controller_is_let_go(window, workspace, qtbot):
    run = write_fake_run(workspace, "stopped", checkpoint=False)
    payload = json.loads((run / "config.json").read_text())
    payload["config"]["optim"]["lr"] = -1.0                   # the trainer exits 2 at once
    (run / "config.json").write_text(json.dumps(payload))
    state = window.manager.open(run)
    timers_before = len(window.findChildren(QTimer))
    window.manager.start(state, resume=False)
    ctl = weakref.ref(window.manager.controller(run))
    qtbot.waitUntil(lambda: not state.live, timeout=90000)
    assert state.state == "error" and "optim.lr" in state.message   # what it said is kept on the run
    assert window.manager.controller(run) is None and not window.manager.command(run, "stop")
    settle()
    assert ctl() is None
    assert len(window.findChildren(QTimer)) == timers_before
