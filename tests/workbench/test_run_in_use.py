"""A run another process writes: its tab says who holds it and disables Resume and Delete (tab,
toolbar, Run menu, runs browser) until the holder lets it go; then the tab re-reads the run."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

from backend.runs import EVENTS_FILE

from .conftest import write_fake_run

ROOT = Path(__file__).resolve().parents[2]
# Takes the run's writer lock like a trainer, says so, appends one event when told, then lets go.
HOLDER = """
import json, sys, time
from backend.run_lock import RunLock
run = sys.argv[1]
with RunLock(run, command="sslwb train").acquire():
    print("held", flush=True)
    sys.stdin.readline()
    with open(run + "/events.jsonl", "a") as fh:
        fh.write(json.dumps({"kind": "status", "time": time.time(), "state": "stopped",
                             "message": "stopped at step 12", "step": 12, "epoch": 2}) + "\\n")
"""


def _menu_action(menu, text: str):
    return next(a for a in menu.actions() if a.text().startswith(text))


def test_a_run_held_by_another_process_shows_the_holder_and_disables_resume_and_delete(window, workspace, qtbot):
    run = write_fake_run(workspace, "stopped")
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(run)], cwd=ROOT, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        panel = window.open_run(run)
        assert panel.state.in_use and not panel.state.live
        assert panel.badge.text() == "in use"
        shown = panel.message.text()
        assert f"in use by PID {holder.pid} on host {socket.gethostname()} since " in shown
        assert panel.message.isVisible()
        assert not panel.resume_button.isEnabled()
        assert not window.resume_action.isEnabled()          # toolbar and Run menu share the action
        assert window.resume_action in window.menuBar().actions()[1].menu().actions()
        qtbot.waitUntil(lambda: (browser_view(window, run) or {}).get("in_use"), timeout=10000)
        window.browser.select([run])
        assert not window.browser.resume_button.isEnabled()
        menu = window.browser.context_menu([run])
        assert not _menu_action(menu, "Resume").isEnabled()
        delete = _menu_action(menu, "Delete")
        assert not delete.isEnabled() and f"in use by process {holder.pid}" in delete.toolTip()
        menu.deleteLater()
        window.resume_run(run)                               # asked anyway: nothing is started
        assert window.manager.controller(run) is None and not panel.state.live

        holder.stdin.write("\n")                             # the holder writes once more and lets go
        holder.stdin.flush()
        assert holder.wait(30) == 0
        # the browser's refresh timer polls the lock: no call from the test
        qtbot.waitUntil(panel.resume_button.isEnabled, timeout=15000)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
    assert not panel.state.in_use and panel.badge.text() == "stopped"
    assert "in use" not in panel.message.text()
    assert panel.state.step == 12                            # the tab re-read what the holder wrote
    assert len(panel.dashboard.curves("loss")[0].xData) == 10
    window.tabs.setCurrentWidget(panel)
    assert window.resume_action.isEnabled()
    qtbot.waitUntil(lambda: not (browser_view(window, run) or {"in_use": 1}).get("in_use"), timeout=10000)
    menu = window.browser.context_menu([run])
    assert _menu_action(menu, "Resume").isEnabled() and _menu_action(menu, "Delete").isEnabled()
    menu.deleteLater()


def browser_view(window, run):
    """What the runs browser shows for ``run`` (None until its scan lists it)."""
    return window.browser.view_of(run)
