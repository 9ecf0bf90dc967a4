"""A long GUI session (``long`` marker, ~20 minutes; ``SSLWB_SOAK_MINUTES`` sets it): the main
window open with a live dashboard, short real runs one after another (real trainer processes
through the run manager), the Inspect window opened and closed, a comparison tab re-overlaid, old
run tabs closed. After every cycle the GUI process is measured (``soak_probe``); the process must
stay healthy (memory bounded, no FD / thread / QTimer accumulating) and every run must end
consistent (finished in its files and its ledger, ``last.pt`` loadable, ``events.jsonl`` parses,
no lock left). The report (RSS curve as CSV, peak RSS at start and after) goes to
``SSLWB_SOAK_REPORT`` (default: a file in the temp folder) and to stdout.

    SSLWB_SOAK_MINUTES=20 SSLWB_SOAK_REPORT=soak.csv QT_QPA_PLATFORM=offscreen \\
        python -m pytest -m long -s tests/workbench/test_soak.py
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import pytest

from backend.checkpoint import load_checkpoint
from backend.run_lock import lock_path
from backend.runs import EVENTS_FILE, checkpoint_path, summarize_run

from . import soak_probe
from .conftest import quick_small

MINUTES = float(os.environ.get("SSLWB_SOAK_MINUTES", "20"))
MIN_CYCLES = 3
RUN_TIMEOUT_MS = 240_000      # one tiny run; generous for a busy machine
OPEN_TABS = 1                 # run tabs kept open between runs (older ones are closed, as a user would)
COMPARED = 4                  # runs overlaid in the comparison tab
INSPECT_OPENS = 2             # Inspect window opened and closed per cycle

pytestmark = [pytest.mark.long, pytest.mark.timeout(int(MINUTES * 60 * 1.5) + 900)]


def report_path() -> Path:
    """Where the report goes: ``$SSLWB_SOAK_REPORT`` or a new file in the temp folder."""
    path = os.environ.get("SSLWB_SOAK_REPORT")
    if path:
        return Path(path)
    return Path(tempfile.gettempdir()) / f"sslwb-soak-{time.strftime('%Y%m%d-%H%M%S')}.csv"


def check_run_consistent(state) -> None:
    """The run ended finished in the GUI and in its files, with a loadable checkpoint, a fully
    parsable event log and its writer lock released."""
    run_dir = state.run_dir
    assert state.state == "finished" and not state.live, (state.state, state.message)
    assert summarize_run(run_dir).state == "finished"
    lines = (run_dir / EVENTS_FILE).read_text(encoding="utf-8").splitlines()
    events = [json.loads(line) for line in lines if line.strip()]       # every line parses
    assert any(e.get("kind") == "status" and e.get("state") == "finished" for e in events)
    ckpt = load_checkpoint(checkpoint_path(run_dir))
    assert isinstance(ckpt, dict) and ckpt
    assert not lock_path(run_dir).exists()


def inspect_once(window, run_dir, qtbot) -> None:
    """Open the run's Inspect window, draw its augmentation pairs (a worker), close it."""
    inspect = window.inspect_run(run_dir)
    assert inspect is not None
    inspect.tabs.setCurrentWidget(inspect.pairs)
    qtbot.waitUntil(lambda: bool(inspect.pairs.grid.tiles), timeout=60_000)
    inspect.close()
    qtbot.waitUntil(lambda: not window.inspect_windows, timeout=10_000)


def close_old_tabs(window) -> None:
    """Keep the newest ``OPEN_TABS`` run tabs (the comparison tab stays)."""
    panels = list(window.panels.values())
    for panel in panels[:-OPEN_TABS]:
        window.close_tab(window.tabs.indexOf(panel))


def test_long_session_stays_healthy(window, qtbot, capsys):
    window.resize(1400, 900)
    window.config_model.set_data(quick_small())
    assert window.launch_action.isEnabled(), window.config_model.errors
    started = time.monotonic()
    samples = [soak_probe.take_sample(0, started, "start")]
    start_peak = samples[0].peak_rss_mb
    runs, compare, cycle = [], None, 0
    while cycle < MIN_CYCLES or time.monotonic() - started < MINUTES * 60:
        cycle += 1
        window.launch_action.trigger()                  # through the editor and the run manager
        panel = window.current_panel()
        assert panel is not None and panel.state.live
        state = panel.state
        qtbot.waitUntil(lambda: not state.live and state.state not in ("starting", "running"),
                        timeout=RUN_TIMEOUT_MS)
        check_run_consistent(state)
        runs.append(state.run_dir)
        for _ in range(INSPECT_OPENS):
            inspect_once(window, state.run_dir, qtbot)
        if compare is None:                             # open from the first run on: same tabs at every sample
            compare = window.compare_runs(runs[-COMPARED:])
        else:
            compare.dashboard.overlay_runs(runs[-COMPARED:])
        close_old_tabs(window)
        window.browser.refresh()
        qtbot.wait(200)
        samples.append(soak_probe.take_sample(cycle, started, state.run_id))

    # The sample after the warm-up cycles (the first Inspect windows and workers grow the heap
    # to a plateau: 6-8 opens on this CPU).
    warm = max(1, min(3, cycle // 4))
    problems = soak_probe.violations(samples, warm)
    verdict = ["healthy" if not problems else "NOT healthy: " + "; ".join(problems),
               f"limits: {soak_probe.Limits()}"]
    text = soak_probe.report_text(samples, warm, start_peak, verdict)
    path = report_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    with capsys.disabled():
        print(f"\n{text}\nsoak report written to {path}")
    assert not problems, problems
