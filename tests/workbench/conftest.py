"""Qt test fixtures: private settings file, a tmp workspace, a main window, hand-made runs."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from backend.config import ExperimentConfig, deep_merge, preset_dict
from backend.runs import EVENTS_FILE, checkpoint_path, create_run

# The quick preset shrunk so a CPU trains it in seconds (2 epochs of 4 steps).
QUICK_SMALL = {"schedule": {"epochs": 2, "warmup_epochs": 0}, "optim": {"batch_size": 64},
               "data": {"synthetic_train_size": 256, "synthetic_test_size": 128},
               "eval": {"probe_batch_size": 64, "knn_every_epochs": 1}}


def quick_small(**overrides) -> dict:
    """The shrunk quick preset as a nested dict, with ``overrides`` merged in."""
    return deep_merge(deep_merge(preset_dict("quick"), QUICK_SMALL), overrides)


@pytest.fixture(autouse=True)
def private_settings(tmp_path, monkeypatch):
    """Every test gets its own settings ini, never the user's."""
    from workbench import settings, workers
    settings.use_ini_file(tmp_path / "settings.ini")
    monkeypatch.setenv("SSLWB_SETTINGS", str(tmp_path / "settings.ini"))
    yield
    workers.set_synchronous(False)
    workers.wait_all(10)
    settings.use_ini_file(None)


@pytest.fixture
def workspace(tmp_path) -> Path:
    path = tmp_path / "ws"
    path.mkdir()
    return path


@pytest.fixture
def window(qtbot, workspace):
    """A main window on the tmp workspace; closed (trainers stopped) at the end."""
    from workbench.main_window import MainWindow
    win = MainWindow(workspace, restore_layout=False)
    win.confirm_close = False
    qtbot.addWidget(win)
    win.show()
    yield win
    win.manager.shutdown(5000)
    win.close()


def write_fake_run(workspace, state: str = "finished", *, epochs: int = 3, steps_per_epoch: int = 5,
                   checkpoint: bool = True, method: str = "simclr", knn: float = 0.5, name: str = "") -> Path:
    """A run directory with hand-written events ending in ``state`` (finished, stopped, error or
    interrupted = killed with no terminal event), for browser and history tests."""
    cfg = ExperimentConfig.from_dict(quick_small(name=name, method={"name": method},
                                                 schedule={"epochs": epochs}))
    run_dir = create_run(workspace, cfg)
    t = time.time() - 100
    events = [{"kind": "status", "time": t, "state": "started", "message": "simclr / tiny_cnn on cpu"},
              {"kind": "status", "time": t, "state": "running", "message": "", "epochs": epochs,
               "total_steps": epochs * steps_per_epoch, "steps_per_epoch": steps_per_epoch}]
    last_epoch = epochs if state == "finished" else max(1, epochs - 1)
    step = 0
    for epoch in range(last_epoch):
        for _ in range(steps_per_epoch):
            step += 1
            t += 0.1
            events.append({"kind": "metric", "time": t, "step": step, "epoch": epoch, "name": "loss",
                           "value": 5.0 - 0.1 * step})
            events.append({"kind": "metric", "time": t, "step": step, "epoch": epoch, "name": "lr", "value": 0.1})
        events.append({"kind": "metric", "time": t, "step": step, "epoch": epoch, "name": "knn_top1",
                       "value": knn * (epoch + 1) / epochs})
    if state in ("finished", "stopped"):
        events.append({"kind": "status", "time": t, "state": state, "message": f"{state} at step {step}",
                       "step": step, "epoch": last_epoch})
    elif state == "error":
        events.append({"kind": "error", "time": t, "message": "data error: no images in /nowhere", "exit_code": 3})
    (run_dir / EVENTS_FILE).write_text("".join(json.dumps(e) + "\n" for e in events))
    if checkpoint:
        checkpoint_path(run_dir).write_bytes(b"not a real checkpoint")
    return run_dir


def open_editor(qtbot):
    """A new experiment editor on the small quick preset, shown (workers run synchronously)."""
    from workbench import workers
    from workbench.editor import ExperimentEditor
    workers.set_synchronous(True)
    ed = ExperimentEditor()
    qtbot.addWidget(ed)
    ed.model.set_data(quick_small())
    ed.show()
    return ed


@pytest.fixture
def editor(qtbot):
    """An experiment editor on the small quick preset, shown (workers run synchronously)."""
    return open_editor(qtbot)
