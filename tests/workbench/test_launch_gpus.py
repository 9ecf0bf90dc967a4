"""Launch on every GPU of this machine: the '1 GPU / N GPUs' choice next to Launch (shown only
with several GPUs; the count is faked here), the torchrun command it starts, and a real 2-process
CPU (gloo) launch through the same GUI path controlled from rank 0 (pause, checkpoint, resume, stop)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from backend.config import ExperimentConfig
from backend.events import read_events
from workbench import process
from workbench.editor import ExperimentEditor
from workbench.process import child_pids, trainer_command

from .conftest import open_editor, quick_small


def make_editor(qtbot, monkeypatch, count: int) -> ExperimentEditor:
    monkeypatch.setattr(process, "gpu_count", lambda devices: count)   # before the editor counts them
    return open_editor(qtbot)


def test_several_gpus_offer_all_of_them_next_to_launch(qtbot, monkeypatch):
    editor = make_editor(qtbot, monkeypatch, 4)
    combo = editor.gpus_combo
    assert combo.isVisibleTo(editor)
    assert [combo.itemText(i) for i in range(combo.count())] == ["1 GPU", "4 GPUs on this machine"]
    assert editor.processes() == 1 and editor.device_combo.isEnabled()   # one GPU unless asked
    combo.setCurrentIndex(1)
    assert editor.processes() == 4 and editor.device() == "cuda"
    assert not editor.device_combo.isEnabled()    # each process takes its own GPU
    with qtbot.waitSignal(editor.launchRequested, timeout=2000) as blocker:
        qtbot.mouseClick(editor.launch_button, Qt.MouseButton.LeftButton)
    cfg, device = blocker.args
    assert device == "cuda" and cfg.runtime.device == "cuda"
    combo.setCurrentIndex(0)
    assert editor.processes() == 1 and editor.device() == editor.device_combo.currentData()


@pytest.mark.parametrize("count", [0, 1])
def test_one_gpu_or_none_hides_the_choice(qtbot, monkeypatch, count):
    editor = make_editor(qtbot, monkeypatch, count)
    assert not editor.gpus_combo.isVisibleTo(editor)
    assert editor.processes() == 1 and editor.device_combo.isEnabled()


def test_the_command_for_four_gpus_is_torchrun(tmp_path):
    run = tmp_path / "run"
    single = ["-m", "backend", "train", "--run-dir", str(run), "--exit-on-stdin-eof"]
    assert trainer_command(run) == single
    assert trainer_command(run, processes=4) == [
        "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=4", *single]
    assert trainer_command(run, True, 4)[-1] == "--resume"
    with pytest.raises(ValueError, match="processes must be"):
        trainer_command(run, processes=0)


def test_launch_on_four_gpus_starts_torchrun_and_a_resume_uses_as_many(window, qtbot, monkeypatch):
    started = []
    monkeypatch.setattr(process._TrainerProcess, "start", lambda self: started.append(self))  # no workers
    window.editor.offer_gpus(4)
    window.config_model.set_data(quick_small())
    window.editor.gpus_combo.setCurrentIndex(1)
    qtbot.mouseClick(window.editor.launch_button, Qt.MouseButton.LeftButton)
    state = window.current_panel().state
    (proc,) = started
    assert proc.program() == sys.executable
    assert proc.arguments() == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=4",
                                "-m", "backend", "train", "--run-dir", str(state.run_dir), "--exit-on-stdin-eof"]
    assert json.loads((state.run_dir / "config.json").read_text())["config"]["runtime"]["device"] == "cuda"
    state.live = False
    window.manager.start(state, resume=True)
    assert started[1].arguments()[:4] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=4"]
    assert started[1].arguments()[-1] == "--resume"


def checkpoints(state) -> list[dict]:
    """The run's checkpoint events so far."""
    return [e for e in read_events(state.run_dir / "events.jsonl") if e.get("state") == "checkpoint"]


@pytest.mark.slow
def test_two_cpu_processes_under_torchrun_from_the_gui_obey_rank_0(window, qtbot):
    """Only rank 0 reads the commands; every rank pauses, checkpoints and stops with it."""
    timeout = 180000
    cfg = ExperimentConfig.from_dict(quick_small(schedule={"epochs": 40}, eval={"knn_every_epochs": 0}))
    panel = window.launch(cfg, "cpu", processes=2)
    state = panel.state
    ctl = window.manager.controller(state.run_dir)
    assert ctl.process.arguments()[3] == "--nproc_per_node=2"
    qtbot.waitUntil(lambda: state.step >= 2, timeout=timeout)
    assert ctl.pause()
    qtbot.waitUntil(lambda: state.state == "paused", timeout=timeout)
    assert ctl.checkpoint()   # written at once while paused, by every rank together
    qtbot.waitUntil(lambda: len(checkpoints(state)) == 1, timeout=timeout)
    paused_at = checkpoints(state)[0]["step"]   # (the GUI's step may lag: losses are sent in batches)
    assert paused_at >= 2
    qtbot.waitUntil(lambda: state.step == paused_at, timeout=10000)
    qtbot.wait(500)
    assert state.state == "paused" and state.step == paused_at   # no step since the pause
    assert ctl.resume()
    qtbot.waitUntil(lambda: state.step > paused_at + 1, timeout=timeout)
    assert ctl.stop()
    qtbot.waitUntil(lambda: not state.live, timeout=timeout)
    assert state.state == "stopped", state.message
    events = read_events(state.run_dir / "events.jsonl")
    assert sum(e.get("state") == "started" for e in events) == 1   # rank 0 alone writes the run
    steps = [e["step"] for e in events if e.get("name") == "loss"]
    assert steps == sorted(set(steps)) and steps[0] == 1
    assert [e["state"] for e in events if e.get("state") in ("paused", "running", "stopped")][-3:] == \
        ["paused", "running", "stopped"]
    assert json.loads((state.run_dir / "config.json").read_text())["device"] == "cpu x 2 ranks"


def test_child_pids_lists_the_direct_children(tmp_path):
    parent = subprocess.Popen(["sh", "-c", "sleep 30 & sleep 30 & wait"])
    try:
        deadline = time.monotonic() + 10
        while len(child_pids(parent.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        children = child_pids(parent.pid)
        assert len(children) == 2 and parent.pid not in children
        assert all(Path(f"/proc/{c}/cmdline").read_bytes().startswith(b"sleep") for c in children)
    finally:
        for pid in child_pids(parent.pid):
            os.kill(pid, signal.SIGKILL)
        parent.kill()
        parent.wait()
    assert child_pids(parent.pid) == []   # gone: nothing to read


@pytest.mark.slow
def test_kill_under_torchrun_kills_the_workers_too(window, qtbot):
    cfg = ExperimentConfig.from_dict(quick_small(schedule={"epochs": 40}, eval={"knn_every_epochs": 0}))
    panel = window.launch(cfg, "cpu", processes=2)
    state = panel.state
    ctl = window.manager.controller(state.run_dir)
    qtbot.waitUntil(lambda: state.step >= 1, timeout=180000)
    workers_ = child_pids(int(ctl.process.processId()))
    assert len(workers_) == 2
    ctl.kill()
    qtbot.waitUntil(lambda: not state.live, timeout=30000)
    assert state.state == "killed", state.message
    qtbot.waitUntil(lambda: not any(_alive(pid) for pid in workers_), timeout=10000)


def _alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie waiting for its reaper counts as gone)."""
    try:
        return "\nState:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False


def test_the_gpu_count_comes_from_the_warm_up_device_list():
    """The GUI thread counts the CUDA entries the warm-up worker found (it never imports torch)."""
    assert process.gpu_count([("CPU", "cpu")]) == 0
    assert process.gpu_count([("CPU", "cpu"), ("CUDA:0  H200", "cuda:0"), ("CUDA:1  H200", "cuda:1")]) == 2
