"""Runs browser refresh time in a workspace of many runs, some of them training in this session.

Makes ``--runs`` small fake run directories (config.json plus an events.jsonl of ``--events``
events each); the first ``--live`` end without a terminal event and are opened in a ``RunManager``
as live runs (a trainer of this GUI). Then, as the GUI does every 3 s, events are appended to each
live run's file (and fed to its state, as its trainer's stdout would) and ``RunsBrowser.refresh``
runs (synchronously, so its scan is timed). Rows: ``backend.runs.list_runs`` from cold, the
browser's first scan, a refresh while the live runs grow, and a refresh with nothing changed.

The script uses only APIs the old and new code share, so it measures either: ``--baseline DIR``
runs it a second time against DIR's code (e.g. /work/main, PYTHONPATH=DIR, same sizes) and prints
both columns. ``PYTHONPATH`` set means "measure that code".

    python benchmarks/runs_browser_refresh.py                       # 200 runs x 3000 events, 20 live
    python benchmarks/runs_browser_refresh.py --baseline /work/main
    python benchmarks/runs_browser_refresh.py --quick
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
if not os.environ.get("PYTHONPATH"):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def make_workspace(root: Path, runs: int, events: int, live: int) -> list[Path]:
    """``runs`` run directories under ``root``; the first ``live`` have no terminal event."""
    from backend.config import ExperimentConfig
    from backend.runs import EVENTS_FILE, create_run

    cfg = ExperimentConfig()
    steps = max(1, (events - 3) // 3)
    t = 1_700_000_000.0
    lines = [json.dumps({"kind": "status", "time": t, "state": "started", "message": "simclr"}),
             json.dumps({"kind": "status", "time": t, "state": "running", "message": "", "total_steps": 10 * steps,
                         "steps_per_epoch": 100, "epochs": max(1, steps // 10)})]
    for step in range(1, steps + 1):
        for name, value in (("loss", 5.0 / step), ("lr", 0.1), ("throughput", 900.0)):
            lines.append(json.dumps({"kind": "metric", "time": t + step, "step": step, "epoch": (step - 1) // 100,
                                     "name": name, "value": value}))
    body = "\n".join(lines) + "\n"
    end = json.dumps({"kind": "status", "time": t + steps, "state": "finished", "message": "done"}) + "\n"
    dirs = []
    for i in range(runs):
        run_dir = create_run(root, cfg, run_id=f"run-{i:04d}")
        (run_dir / EVENTS_FILE).write_text(body if i < live else body + end)
        dirs.append(run_dir)
    return dirs


def measure(runs: int, events: int, live: int, refreshes: int, grow: int) -> dict:
    """Times in ms of list_runs, the browser's first scan, refreshes while live runs grow, idle refreshes."""
    from PySide6.QtWidgets import QApplication

    import backend
    from backend.runs import EVENTS_FILE, list_runs
    from workbench import workers
    from workbench.run_manager import RunManager
    from workbench.runs_browser import RunsBrowser

    app = QApplication.instance() or QApplication([])
    workers.set_synchronous(True)
    with tempfile.TemporaryDirectory() as tmp:
        ws = Path(tmp)
        dirs = make_workspace(ws, runs, events, live)
        t0 = time.perf_counter()
        listed = list_runs(ws)
        list_ms = 1000 * (time.perf_counter() - t0)
        assert len(listed) == runs
        manager = RunManager(ws)
        states = [manager.open(d) for d in dirs[:live]]
        for state in states:
            state.set_live(True)
        t0 = time.perf_counter()
        browser = RunsBrowser(ws, manager)  # its first scan runs in the constructor
        first_ms = 1000 * (time.perf_counter() - t0)
        step = 10 ** 6
        grow_ms, idle_ms = [], []
        for _ in range(refreshes):
            for state in states:  # the trainers went on: their files grow, their states learn it
                batch = [{"kind": "metric", "time": time.time(), "step": step + j, "epoch": 0, "name": "loss",
                          "value": 1.0} for j in range(grow)]
                with open(state.run_dir / EVENTS_FILE, "a") as fh:
                    fh.write("".join(json.dumps(e) + "\n" for e in batch))
                state.apply_events(batch)
            step += grow
            t0 = time.perf_counter()
            browser.refresh()
            grow_ms.append(1000 * (time.perf_counter() - t0))
            t0 = time.perf_counter()
            browser.refresh()
            idle_ms.append(1000 * (time.perf_counter() - t0))
        assert browser.model.rowCount() == runs
        browser.timer.stop()
        browser.deleteLater()
        app.processEvents()
    return {"code": str(Path(backend.__file__).resolve().parent.parent), "list_runs": list_ms,
            "first_scan": first_ms, "refresh_live_growing": statistics.median(grow_ms),
            "refresh_idle": statistics.median(idle_ms)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--events", type=int, default=3000, help="events per run")
    parser.add_argument("--live", type=int, default=20, help="runs training in this session")
    parser.add_argument("--refreshes", type=int, default=5)
    parser.add_argument("--grow", type=int, default=30, help="events each live run adds between refreshes")
    parser.add_argument("--quick", action="store_true", help="50 runs x 1000 events, 5 live")
    parser.add_argument("--baseline", type=Path, help="also measure the code in this checkout (e.g. /work/main)")
    parser.add_argument("--json", action="store_true", help="print the numbers as JSON only")
    args = parser.parse_args(argv)
    if args.quick:
        args.runs, args.events, args.live = 50, 1000, 5
    sizes = ["--runs", str(args.runs), "--events", str(args.events), "--live", str(args.live),
             "--refreshes", str(args.refreshes), "--grow", str(args.grow)]
    columns = {}
    if args.baseline is not None:
        env = {**os.environ, "PYTHONPATH": str(args.baseline.resolve())}
        out = subprocess.run([sys.executable, __file__, *sizes, "--json"], env=env, check=True,
                             capture_output=True, text=True).stdout
        columns["before"] = json.loads(out.strip().splitlines()[-1])
    columns["this code" if args.baseline is None else "after"] = measure(args.runs, args.events, args.live,
                                                                        args.refreshes, args.grow)
    if args.json:
        print(json.dumps(next(iter(columns.values()))))
        return 0
    print(f"{args.runs} runs x {args.events} events, {args.live} live (+{args.grow} events each per refresh), "
          f"median of {args.refreshes} refreshes")
    names = list(columns)
    print(f"{'':34}" + "".join(f"{n:>14}" for n in names) + ("      speed-up" if len(names) == 2 else ""))
    for key, label in (("list_runs", "backend list_runs (cold), ms"), ("first_scan", "browser first scan, ms"),
                       ("refresh_live_growing", "refresh, live runs growing, ms"),
                       ("refresh_idle", "refresh, nothing changed, ms")):
        row = f"{label:34}" + "".join(f"{columns[n][key]:14.1f}" for n in names)
        if len(names) == 2:
            row += f"{columns[names[0]][key] / max(columns[names[1]][key], 1e-9):13.1f}x"
        print(row)
    for n in names:
        print(f"{n}: {columns[n]['code']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
