"""GUI start-up time: from launching ``sslwb gui`` to the main window's first paint.

Each repeat starts a fresh Python process (offscreen, a fresh workspace and settings file) that
runs the real entry point (``sslwb.cli.main(["gui", ...])``; ``backend.cli.main`` on older checkouts) with one addition: an event filter,
installed on the QApplication as ``workbench.app.application`` creates it, reports the first
Paint event of the main window and ends the process. The time runs from just before the process
is spawned (interpreter start-up and imports included) to that paint. The same driver works on
any checkout, so a baseline tree can be timed in the same run:

    python benchmarks/gui_start.py                          # this checkout, 5 repeats
    python benchmarks/gui_start.py --baseline /work/main    # before (baseline) vs after (this checkout)
    python benchmarks/gui_start.py --repeats 9 --baseline /work/main
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

ROOT = Path(__file__).resolve().parent.parent

DRIVER = r"""
import json, os, sys, time
import workbench.app as app_mod
from PySide6.QtCore import QEvent, QObject

made = app_mod.application
class FirstPaint(QObject):
    def eventFilter(self, obj, event):
        if event.type() == QEvent.Type.Paint and obj.isWidgetType() and obj.inherits("QMainWindow"):
            print(json.dumps({"painted_at": time.time(), "torch_loaded": "torch" in sys.modules}), flush=True)
            os._exit(0)
        return False
def application(argv=None):
    app = made(argv)
    app._first_paint = FirstPaint()
    app.installEventFilter(app._first_paint)
    return app
app_mod.application = application
try:
    from sslwb.cli import main
except ImportError:  # checkouts from before the sslwb package
    from backend.cli import main
sys.exit(main(["gui", "--workspace", sys.argv[1]]))
"""


def time_start(tree: Path, timeout: float = 120.0) -> tuple[float, bool]:
    """(seconds from spawn to the first paint, whether torch was loaded by then) for one launch
    of the GUI of checkout ``tree``."""
    with tempfile.TemporaryDirectory(prefix="sslwb-start-") as tmp:
        env = dict(os.environ, PYTHONPATH=str(tree), QT_QPA_PLATFORM="offscreen",
                   SSLWB_SETTINGS=str(Path(tmp) / "settings.ini"))
        workspace = Path(tmp) / "ws"
        workspace.mkdir()
        t0 = time.time()
        done = subprocess.run([sys.executable, "-c", DRIVER, str(workspace)], cwd=tmp, env=env,
                              capture_output=True, text=True, timeout=timeout)
        lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
        if not lines:
            raise RuntimeError(f"{tree}: the window was never painted (exit {done.returncode}): "
                               f"{done.stderr.strip()[-500:]}")
        report = json.loads(lines[-1])
        return report["painted_at"] - t0, report["torch_loaded"]


def main(argv=None) -> int:
    """Print a table of start-up times (median of the repeats) per checkout."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--baseline", type=Path, help="another checkout to time first (e.g. /work/main)")
    args = p.parse_args(argv)
    trees = ([("before", args.baseline)] if args.baseline else []) + [("after" if args.baseline else "this", ROOT)]
    rows = []
    for label, tree in trees:
        time_start(tree)  # warm the OS file cache; not counted
        runs = [time_start(tree) for _ in range(args.repeats)]
        secs = [s for s, _ in runs]
        rows.append((label, str(tree), statistics.median(secs), min(secs), max(secs), any(t for _, t in runs)))
    print(f"{'tree':<7} {'checkout':<28} {'median s':>9} {'min s':>7} {'max s':>7}  torch loaded at paint")
    for label, tree, med, lo, hi, torch_loaded in rows:
        print(f"{label:<7} {tree:<28} {med:>9.2f} {lo:>7.2f} {hi:>7.2f}  {'yes' if torch_loaded else 'no'}")
    if len(rows) == 2:
        print(f"after / before: {rows[1][2] / rows[0][2]:.2f}x ({args.repeats} repeats each, medians)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
