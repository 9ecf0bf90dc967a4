"""Grab queue.png (the main window with the Queue dock while a 2x2 sweep works through the queue)
and sweep.png (the Sweeps tab once the sweep has finished): ``python docs/screenshots/queue_shots.py
OUT_DIR`` (offscreen). Trains four real runs on synthetic data, one after another (a few minutes
on a laptop CPU)."""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from backend.config import ExperimentConfig, deep_merge
from tests.workbench.conftest import quick_small
from workbench import settings
from workbench.app import application, settle

BASE = {"name": "", "schedule": {"epochs": 2}, "data": {"synthetic_train_size": 256, "synthetic_test_size": 256}}
GRID = [("method.temperature", "0.1, 0.5"), ("optim.lr", "0.03, 0.3")]


def wait(app, until, timeout_s: float) -> None:
    """Process events until ``until()`` holds (or raise after ``timeout_s``)."""
    deadline = time.monotonic() + timeout_s
    while not until():
        if time.monotonic() > deadline:
            raise TimeoutError("the sweep did not get there in time")
        settle(app, 0.2)


def main(out: Path) -> None:
    """Run a 2x2 sweep through the GUI's queue and write queue.png and sweep.png into ``out``."""
    tmp = Path(tempfile.mkdtemp())
    settings.use_ini_file(tmp / "settings.ini")
    app = application()
    from workbench.main_window import MainWindow
    ws = tmp / "ws"
    ws.mkdir()
    win = MainWindow(ws, restore_layout=False)
    win.confirm_close = False
    win.resize(1500, 940)
    win.show()
    win.config_model.set_data(deep_merge(quick_small(), BASE))
    dialog = win.queue.sweep_dialog(ExperimentConfig.from_dict(win.config_model.data()), "cpu", exec_dialog=False)
    dialog.name_edit.setText("temperature-x-lr")
    dialog.set_fields(GRID)
    dialog.accept()
    view = win.queue.sweep_created(dialog)
    win.queue.dock.raise_()
    runner = win.queue.runner

    def states():
        return [e.state for e in runner.queue.entries()]

    def second_training():
        live = [s for s in win.manager.live_runs() if s.step >= 2]
        return states().count("done") >= 1 and bool(live)

    wait(app, second_training, 900)
    win.tabs.setCurrentWidget(view)
    view.refresh(force=True)
    settle(app, 2.0)
    out.mkdir(parents=True, exist_ok=True)
    win.grab().save(str(out / "queue.png"))
    wait(app, lambda: set(states()) == {"done"}, 1800)
    win.tabs.setCurrentWidget(view)
    view.refresh(force=True)
    settle(app, 1.5)
    view.grab().save(str(out / "sweep.png"))
    print("\n".join(f"{r.run_id} {r.point} {r.state} kNN={r.knn}" for r in view.rows))
    win.close()


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/screenshots"))
