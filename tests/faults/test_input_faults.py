"""Fault suite, scenarios 15-20 of docs/faults.md: numerics and bad inputs and config.

15. A non-finite loss: the step is skipped and counted, weights stay finite, K bad steps in a row
    stop the run naming step, lr, AMP and grad scale; no checkpoint holds non-finite values.
16. Collapse (a constant projector; a rank-2 bottleneck): one warning event per onset, shown on
    the run's dashboard; the rank-2 case is caught although embedding_std looks healthy.
17. A dirty image folder: every bad file reported with its reason, the bomb refused, training
    runs on the rest (a real ``python -m backend train``).
18. Folder problems: a clear message with the likely fix before any trainer starts (GUI), exit 3
    from the CLI.
19. Invalid config: every error at once with field paths; no process; the trainer re-validates.
20. A big folder with 1 % bad files: scanned off the GUI thread with progress and cancel; a re-scan
    of unchanged files is served from the (path, size, mtime) cache.

The trainer is driven for real: ``run_training``/``backend.cli.main`` in-process where a fault is
injected or only the exit path matters, ``python -m backend train`` subprocesses end to end.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from PySide6.QtCore import Qt, QTimer

from backend import faults
from backend.checkpoint import load_checkpoint
from backend.cli import main as cli_main
from backend.collapse import CollapseMonitor, collapse_reasons, rank_threshold
from backend.config import ExperimentConfig
from backend.data import scan as scan_mod
from backend.data.scan import scan_folder
from backend.events import read_events
from backend.optim import lr_at, peak_lr
from backend.runs import CONFIG_FILE, checkpoint_path
from backend.train import MAX_BAD_STEPS, run_training
from tests.backend.trainer_helpers import make_run, run_cli, stdout_events, tiny_config
from tests.workbench.conftest import private_settings, window, workspace  # noqa: F401 - fixtures

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    """A private decoded-image and scan cache per test (subprocesses inherit it)."""
    monkeypatch.setenv("SSLWB_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture
def quiet_cli(monkeypatch):
    """Run ``backend.cli.main`` in this process without replacing pytest's signal handlers."""
    from backend.control import TrainerControl
    monkeypatch.setattr(TrainerControl, "install_signal_handlers", lambda self: None)


def events_of(run_dir) -> list[dict]:
    return read_events(Path(run_dir) / "events.jsonl")


def finite_state(state_dict: dict) -> list[str]:
    """Names of floating tensors holding a NaN or Inf."""
    return [k for k, v in state_dict.items() if torch.is_tensor(v) and v.is_floating_point()
            and not torch.isfinite(v).all()]


# ---------------------------------------------------------------------------------------------
# 15. NaN / Inf loss

def test_15_nan_steps_are_skipped_counted_and_k_in_a_row_stop_the_run(tmp_path, monkeypatch):
    bad = [3] + list(range(6, 6 + MAX_BAD_STEPS))          # one isolated, then K in a row
    monkeypatch.setattr(faults, "_PLAN", {s: [faults.Fault("nan", s)] for s in bad})
    run = make_run(tmp_path, schedule={"epochs": 5}, runtime={"keep_epoch_checkpoints": True,
                                                               "num_threads": 1})
    assert run_training(run, echo=False) == 1
    events = events_of(run)
    losses = {e["step"] for e in events if e.get("name") == "loss"}
    assert losses == {1, 2, 4, 5}                          # bad steps have no loss point
    skips = [e for e in events if e.get("level") == "warning" and "non-finite loss" in e["message"]]
    assert [e["step"] for e in skips] == bad
    assert [e["skipped_steps"] for e in skips] == list(range(1, len(bad) + 1))   # counted
    assert "update skipped (1 skipped so far)" in skips[0]["message"]

    error = [e for e in events if e["kind"] == "error"][-1]
    last = bad[-1]
    cfg = tiny_config(schedule={"epochs": 5})
    lr = lr_at(last - 1, 5 * 4, 0, peak_lr(cfg), cfg.schedule.min_lr_ratio)
    message = error["message"]
    assert f"{MAX_BAD_STEPS} steps in a row" in message and f"last at step {last}," in message
    assert re.search(r"lr ([0-9.e-]+)", message) and float(re.search(r"lr ([0-9.e-]+)", message)[1]) == \
        pytest.approx(lr, rel=1e-3)
    assert "AMP off" in message and "grad scale 1.0" in message and "lower optim.lr" in message

    # Checkpoints were written at the ends of epochs 1-3; none holds a non-finite value, and the
    # parameters did not move over epoch 3, whose four steps were all skipped.
    ckpts = {n: load_checkpoint(checkpoint_path(run, f"epoch-{n:04d}.pt")) for n in (1, 2, 3)}
    assert not (run / "checkpoints" / "epoch-0004.pt").exists()
    for ckpt in ckpts.values():
        assert finite_state(ckpt["model"]) == []
    assert ckpts[3]["skipped_steps"] == 1 + 3 + 4           # step 3, steps 6-8, steps 9-12
    params = [k for k in ckpts[3]["model"] if "running_" not in k and "num_batches" not in k]
    moved = [k for k in params if not torch.equal(ckpts[2]["model"][k], ckpts[3]["model"][k])]
    assert moved == []
    assert any(not torch.equal(ckpts[1]["model"][k], ckpts[2]["model"][k]) for k in params)  # step 5 trained
    assert finite_state(load_checkpoint(checkpoint_path(run))["model"]) == []


def test_15_a_nan_forward_pass_does_not_poison_buffers_or_checkpoints(tmp_path, monkeypatch):
    """NaN inside the forward pass (not just the loss) writes NaN into batch-norm statistics;
    the skipped step repairs them so evaluation and checkpoints stay finite."""
    from backend.data.augment import ViewGenerator

    calls = {"n": 0}
    original = ViewGenerator.__call__

    def poisoned(self, images, generator=None):
        views = original(self, images, generator=generator)
        calls["n"] += 1
        # Call 1 draws the probe batch; call 4 is training step 3.
        return [v * float("nan") for v in views] if calls["n"] == 4 else views

    monkeypatch.setattr(ViewGenerator, "__call__", poisoned)
    run = make_run(tmp_path, runtime={"num_threads": 1})
    assert run_training(run, echo=False) == 0
    events = events_of(run)
    (skip,) = [e for e in events if e.get("level") == "warning" and "non-finite loss" in e["message"]]
    assert skip["step"] == 3 and "running_mean/var" in skip["message"]
    assert finite_state(load_checkpoint(checkpoint_path(run))["model"]) == []
    later = [e["value"] for e in events if e.get("name") in ("effective_rank", "knn_top1") and e["step"] > 3]
    assert later and all(math.isfinite(v) for v in later)
    assert events[-1]["state"] == "finished"


# ---------------------------------------------------------------------------------------------
# 16. Collapse

def _constant_projector(monkeypatch) -> None:
    """SimCLR whose projector maps every image to the same vector (zero weights, frozen)."""
    from backend.methods.simclr import SimCLR

    original = SimCLR.__init__

    def init(self, cfg):
        original(self, cfg)
        last = [m for m in self.projector.modules() if isinstance(m, torch.nn.Linear)][-1]
        with torch.no_grad():
            last.weight.zero_()
            last.bias.fill_(0.5)
        self.projector.requires_grad_(False)

    monkeypatch.setattr(SimCLR, "__init__", init)


def _collapse_warnings(events) -> list[dict]:
    return [e for e in events if e.get("warning") == "collapse"]


def test_16_constant_projector_warns_once_and_the_dashboard_shows_it(tmp_path, monkeypatch, qtbot):
    from workbench.dashboard import RunDashboard

    _constant_projector(monkeypatch)
    run = make_run(tmp_path, runtime={"num_threads": 1})
    assert run_training(run, echo=False) == 0
    events = events_of(run)
    evaluations = sorted(e["step"] for e in events if e.get("name") == "embedding_std")
    (warning,) = _collapse_warnings(events)                   # once per onset, not per evaluation
    assert len(evaluations) >= 4 and warning["step"] in evaluations[:3]   # within a few evaluations
    assert warning["kind"] == "log" and warning["level"] == "warning"
    assert "embedding_std" in warning["message"] and "effective rank" in warning["message"]

    dash = RunDashboard()
    qtbot.addWidget(dash)
    dash.load_history(run)
    assert warning["message"] in dash.collapse_message()
    assert not dash.collapse_label.isHidden() and "Collapse" in dash.collapse_label.text()


def test_16_rank_two_bottleneck_is_caught_although_embedding_std_looks_healthy(tmp_path, qtbot):
    from workbench.dashboard import RunDashboard
    from backend.ledger import fold

    run = make_run(tmp_path, model={"projector_hidden_dim": 2}, schedule={"epochs": 3},
                   runtime={"num_threads": 1})
    assert run_training(run, echo=False) == 0
    events = events_of(run)
    (warning,) = _collapse_warnings(events)
    dim = tiny_config().model.projector_out_dim
    std = {e["step"]: e["value"] for e in events if e.get("name") == "embedding_std"}
    rank = {e["step"]: e["value"] for e in events if e.get("name") == "effective_rank"}
    last = max(std)
    assert std[last] > 0.1 / math.sqrt(dim)                  # the std test alone sees nothing ...
    assert rank[last] < 3.5                                  # ... the rank shows two directions
    assert "effective rank" in warning["message"] and "embedding_std" not in warning["message"]
    # The dashboard judges history by the trainer's own rule, so it catches it too.
    reason = fold(events).collapse_reason(dim)
    assert "effective rank" in reason and "embedding_std" not in reason
    dash = RunDashboard()
    qtbot.addWidget(dash)
    dash.set_run(run)
    dash.add_events(events)                                  # as a live stream would deliver them
    qtbot.waitUntil(lambda: bool(dash.collapse_message()), timeout=5000)
    assert "effective rank" in dash.collapse_message()


def test_16_collapse_monitor_rearms_after_recovery():
    healthy, collapsed = (0.12, 20.0), (0.001, 1.1)
    monitor = CollapseMonitor(dim=64, probe_size=64)
    seen = [monitor.update(step, *values) for step, values in
            enumerate([healthy, collapsed, collapsed, collapsed, healthy, collapsed, collapsed], 1)]
    kinds = [s[0] if s else None for s in seen]
    assert kinds == [None, None, "collapse", None, "collapse_cleared", None, "collapse"]
    assert collapse_reasons(0.12, 20.0, 64, 64) == []
    assert rank_threshold(64, 2) == 1.0                       # a 2-wide projector is not flagged as narrow


# ---------------------------------------------------------------------------------------------
# 17. A dirty image folder, end to end

def _jpeg_bytes(rng, size=(40, 40), mode="RGB", **kw) -> bytes:
    buf = io.BytesIO()
    pixels = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).convert(mode).save(buf, "JPEG", quality=90, **kw)
    return buf.getvalue()


def make_dirty_folder(root: Path) -> tuple[list, dict]:
    """Two classes of 24 plain JPEGs plus odd-but-valid files and bad ones.
    Returns ([odd good files], {bad file: expected reason prefix})."""
    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        for i in range(24):
            (root / cls / f"{i:02d}.jpg").write_bytes(_jpeg_bytes(rng))
    (root / "a" / "cmyk.jpg").write_bytes(_jpeg_bytes(rng, mode="CMYK"))
    rgba = Image.new("RGBA", (40, 40), (0, 0, 0, 0))
    rgba.paste((200, 30, 30, 255), (0, 0, 20, 40))
    rgba.save(root / "b" / "transparent.png")
    grey = np.tile(np.linspace(0, 65535, 40, dtype=np.uint16), (40, 1))
    Image.fromarray(grey).save(root / "a" / "grey16.png")
    with Image.open(root / "a" / "grey16.png") as im:
        assert im.mode.startswith("I")
    pal = Image.new("P", (40, 40), 0)
    pal.putpalette([0, 0, 0, 20, 120, 220] + [0] * 762)
    pal.paste(1, (0, 0, 40, 20))
    pal.save(root / "b" / "palette.png", transparency=0)
    exif = Image.Exif()
    exif[0x0112] = 6
    (root / "a" / "rotated.jpg").write_bytes(_jpeg_bytes(rng, size=(48, 32), exif=exif.tobytes()))
    odd = ["a/cmyk.jpg", "b/transparent.png", "a/grey16.png", "b/palette.png", "a/rotated.jpg"]
    good = _jpeg_bytes(rng)
    (root / "a" / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (root / "a" / "empty.jpg").write_bytes(b"")
    (root / "b" / "notes.jpg").write_text("these are my notes, not a photo\n")
    Image.new("1", (14000, 14000)).save(root / "b" / "bomb.png")   # 196 Mpx in a few KB
    bad = {"a/truncated.jpg": "truncated", "a/empty.jpg": "empty file (0 bytes)",
           "b/notes.jpg": "not a readable image", "b/bomb.png": "refused as a possible decompression bomb"}
    return odd, bad


def test_17_dirty_folder_trains_on_the_rest_and_reports_every_bad_file(tmp_path):
    from backend.data.imagefolder import decode_image
    from backend.data.sources import load_dataset

    root = tmp_path / "dirty"
    odd, bad = make_dirty_folder(root)
    assert (root / "b" / "bomb.png").stat().st_size < 100_000
    cfg = tmp_path / "dirty.toml"
    cfg.write_text(f'base = "quick"\n[data]\nsource = "imagefolder:{root}"\nval_fraction = 0.25\n'
                   f'[optim]\nbatch_size = 16\n[schedule]\nepochs = 1\nwarmup_epochs = 0\n'
                   f'[eval]\nprobe_batch_size = 16\nknn_k = 5\n[runtime]\nnum_threads = 1\n')
    result = run_cli("train", "--config", cfg, "--run-dir", tmp_path / "run", "--no-stdin")
    assert result.returncode == 0, result.stderr[-2000:]
    events = stdout_events(result.stdout)
    assert events == events_of(tmp_path / "run")[-len(events):]      # the log file holds the same
    reports = [e for e in events if e.get("skipped")]
    listed = {f: why for e in reports for f, why in e["skipped"]}
    assert set(listed) == set(bad)                                  # every bad file, nothing else
    for name, reason in bad.items():
        assert listed[name].startswith(reason), (name, listed[name])
        assert any(name in e["message"] for e in reports)           # named in the sentence too
    assert events[-1]["kind"] == "status" and events[-1]["state"] == "finished"
    ready = next(e["message"] for e in events if e["message"].startswith("data ready"))
    n_train, n_test = map(int, re.search(r"(\d+) training and (\d+) held-out", ready).groups())
    assert n_train + n_test == 48 + len(odd)
    # The odd-but-valid files are in the decoded data the run trained on (from the run's cache).
    data_cfg = ExperimentConfig.from_dict(json.loads((tmp_path / "run" / CONFIG_FILE).read_text())["config"]).data
    split_images = torch.cat([load_dataset(data_cfg, s).images for s in ("train", "test")])
    for name in odd:
        pixels = torch.from_numpy(decode_image(root / name, data_cfg.image_size).transpose(2, 0, 1).copy())
        assert (split_images == pixels).flatten(1).all(1).any(), f"{name} was not used"


# ---------------------------------------------------------------------------------------------
# 18. Folder problems

def make_problem_folders(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """{problem: (folder, words the message must contain)} for folders that cannot be trained on."""
    out = {"missing path": (tmp_path / "no-such-folder", "does not exist")}
    empty = tmp_path / "empty-root"
    empty.mkdir()
    (empty / "readme.txt").write_text("images go here")
    out["empty root"] = (empty, "contains no images")
    classes = tmp_path / "empty-classes"
    for cls in ("cats", "dogs", "birds"):
        (classes / cls).mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(classes / "cats" / "1.png")
    out["empty class folders"] = (classes, "class folder(s) without images")
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    out["symlink loop (root)"] = (loop, "symlink loop")
    inner = tmp_path / "inner-loop"
    (inner / "cats").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(inner / "cats" / "1.png")
    (inner / "again").symlink_to(inner, target_is_directory=True)
    out["symlink loop (class folder)"] = (inner, "symlink loop")
    return out


FIXES = ("check the path", "put the images", "add images to them or remove them", "real folder",
         "remove the link", "read access")


def test_18_cli_exits_3_with_the_problem_and_the_fix(tmp_path, capsys, quiet_cli):
    for problem, (folder, words) in make_problem_folders(tmp_path).items():
        run_dir = tmp_path / "runs" / re.sub(r"\W+", "-", problem)
        code = cli_main(["train", "--preset", "quick", "--set", f"data.source='imagefolder:{folder}'",
                         "--run-dir", str(run_dir), "--no-stdin"])
        error = [e for e in stdout_events(capsys.readouterr().out) if e["kind"] == "error"]
        assert code == 3, (problem, error)
        message = error[-1]["message"]
        assert str(folder.name) in message and words in message, (problem, message)
        assert any(fix in message for fix in FIXES), (problem, message)
        assert not checkpoint_path(run_dir).exists()


def test_18_no_permission_message_names_the_fix(tmp_path, capsys, quiet_cli, monkeypatch):
    """Unreadable folder, simulated (works as root too): exit 3 and a chmod hint."""
    import backend.data.imagefolder as imagefolder

    locked = tmp_path / "locked"
    (locked / "cats").mkdir(parents=True)
    real_scandir = os.scandir

    def scandir(path="."):
        if Path(path) == locked:
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(imagefolder.os, "scandir", scandir)
    code = cli_main(["train", "--preset", "quick", "--set", f"data.source='imagefolder:{locked}'",
                     "--run-dir", str(tmp_path / "run"), "--no-stdin"])
    message = [e for e in stdout_events(capsys.readouterr().out) if e["kind"] == "error"][-1]["message"]
    assert code == 3 and "Permission denied" in message and "chmod -R u+rX" in message


@pytest.mark.skipif(IS_ROOT, reason="running as root: chmod 000 does not stop root from reading, so a "
                                    "real permission error cannot be produced (the simulated test covers it)")
def test_18_no_permission_with_chmod(tmp_path, capsys, quiet_cli):
    locked = tmp_path / "locked"
    (locked / "cats").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(locked / "cats" / "1.png")
    locked.chmod(0)
    try:
        code = cli_main(["train", "--preset", "quick", "--set", f"data.source='imagefolder:{locked}'",
                         "--run-dir", str(tmp_path / "run"), "--no-stdin"])
    finally:
        locked.chmod(0o755)
    message = [e for e in stdout_events(capsys.readouterr().out) if e["kind"] == "error"][-1]["message"]
    assert code == 3 and "chmod" in message


def assert_nothing_started(window, workspace) -> None:
    """No trainer process, no run known to the manager, no run directory in the workspace."""
    assert window.manager.controllers == {} and window.manager.states == {}
    runs = workspace / "runs"
    assert not runs.exists() or list(runs.iterdir()) == []
    assert window.current_panel() is None


def test_18_gui_refuses_to_launch_before_any_trainer_starts(window, workspace, qtbot, tmp_path):
    from tests.workbench.conftest import quick_small

    messages = []
    window.editor.message.connect(messages.append)
    picker = window.editor.source_picker()
    model = window.config_model
    for problem, (folder, words) in make_problem_folders(tmp_path).items():
        model.set_data(quick_small(data={"source": f"imagefolder:{folder}"}))
        # the fields are valid; the folder check (off the GUI thread) is what Launch follows
        qtbot.waitUntil(lambda: not model.pending, timeout=10000)
        assert list(model.field_errors) == ["data.source"], (problem, model.errors)
        assert not window.editor.launch_button.isEnabled() and not window.launch_action.isEnabled()
        assert words in window.editor.problems.text(), (problem, window.editor.problems.text())
        messages.clear()
        qtbot.mouseClick(window.editor.launch_button, Qt.MouseButton.LeftButton)   # disabled: nothing
        window.editor.launch()                               # a direct call re-checks and refuses
        assert len(messages) == 1 and messages[0].startswith("cannot launch: "), (problem, messages)
        assert folder.name in messages[0] and words in messages[0], (problem, messages[0])
        assert any(fix in messages[0] for fix in FIXES), (problem, messages[0])
        assert words in picker.error_label.text() and not picker.error_label.isHidden()
        assert_nothing_started(window, workspace)
    window.launch_action.trigger()                            # Ctrl+Return is disabled too
    assert len(messages) == 1
    assert_nothing_started(window, workspace)


# ---------------------------------------------------------------------------------------------
# 19. Invalid config

BAD_TOML = """\
[data]
synthetic_train_size = 100
image_size = 32
colour = "red"
[augment]
num_local_crops = 2
local_crop_size = 64
[method]
name = "simclr2"
[optim]
lr = -0.1
batch_size = 256
[eval]
knn_k = "twenty"
"""
BAD_FIELDS = ("data.colour", "augment.local_crop_size", "method.name", "optim.lr", "optim.batch_size",
              "eval.knn_k")


def test_19_cli_lists_every_error_with_its_field_and_starts_nothing(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(BAD_TOML)
    result = run_cli("train", "--config", cfg, "--run-dir", tmp_path / "run", "--no-stdin", timeout=120)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    for path in BAD_FIELDS:
        assert any(line.startswith(f"error: {path} ") for line in lines), (path, lines)
    assert len(lines) == len(BAD_FIELDS)
    events = events_of(tmp_path / "run")
    assert [e["kind"] for e in events] == ["error"] and events[0]["exit_code"] == 2
    assert all(path in events[0]["message"] for path in BAD_FIELDS)
    assert not (tmp_path / "run" / "checkpoints").exists() or not any((tmp_path / "run" / "checkpoints").iterdir())


def test_19_trainer_revalidates_a_bad_run_config(tmp_path):
    run = make_run(tmp_path)
    payload = json.loads((run / CONFIG_FILE).read_text())
    payload["config"]["optim"]["lr"] = 0.0
    payload["config"]["optim"]["batch_size"] = 100000
    payload["config"]["method"]["name"] = "nope"
    payload["config"]["optim"]["surprise"] = 1
    (run / CONFIG_FILE).write_text(json.dumps(payload))
    assert run_training(run, echo=False) == 2
    (error,) = [e for e in events_of(run) if e["kind"] == "error"]
    for path in ("optim.lr", "optim.batch_size", "method.name", "optim.surprise"):
        assert path in error["message"], path
    assert not any(e.get("state") == "started" for e in events_of(run))


def test_19_gui_shows_every_error_and_starts_no_process(window, workspace, qtbot, tmp_path):
    messages = []
    window.editor.message.connect(messages.append)
    bad_file = tmp_path / "bad.toml"
    bad_file.write_text(BAD_TOML)
    assert window.editor.load_file(bad_file) is False         # unknown keys and wrong types: refused
    for path in BAD_FIELDS:                                   # ... naming every problem of the file
        assert path in messages[-1], (path, messages[-1])
    assert window.config_model.source_path is None            # the form kept what it had
    # The range and cross-field errors the form can show: all listed at once, Launch disabled.
    window.config_model.set_data({"data": {"synthetic_train_size": 100, "image_size": 32},
                                  "augment": {"num_local_crops": 2, "local_crop_size": 64},
                                  "method": {"name": "simclr2"}, "optim": {"lr": -0.1, "batch_size": 256}})
    errors = window.config_model.errors
    for path in ("augment.local_crop_size", "method.name", "optim.lr", "optim.batch_size"):
        assert any(e.startswith(f"{path} ") for e in errors), (path, errors)
    assert not window.editor.launch_button.isEnabled()
    assert f"{len(errors)} problems" in window.editor.problems.text()
    window.launch_action.trigger()
    window.editor.launch()
    assert messages[-1].startswith("cannot launch: ") and "optim.lr" in messages[-1]
    assert_nothing_started(window, workspace)


# ---------------------------------------------------------------------------------------------
# 20. A big folder with 1 % bad files: scan off the GUI thread, progress, cancel, cache

BAD_KINDS = ((b"", "empty file (0 bytes)"), (b"GIF89a but not really", "not a readable image"),
             (None, "truncated"))


def make_big_folder(root: Path, n: int, classes: int = 10) -> dict[str, str]:
    """``n`` files, 1 % bad: one small JPEG's bytes written to every good path. Returns {bad: reason}."""
    good = _jpeg_bytes(np.random.default_rng(0), size=(32, 32))
    kinds = [(data if data is not None else good[: len(good) // 2], why) for data, why in BAD_KINDS]
    for c in range(classes):
        (root / f"class{c}").mkdir(parents=True)
    n_bad = n // 100
    bad = {}
    for i in range(n):
        rel = f"class{i % classes}/{i:06d}.jpg"
        if i % 100 == 7 and len(bad) < n_bad:
            data, why = kinds[len(bad) % len(kinds)]
            bad[rel] = why
        else:
            data = good
        with open(root / rel, "wb") as fh:
            fh.write(data)
    return bad


class CheckSpy:
    """Wraps ``scan.check_file``: counts calls, records threads, can hold the worker at a call."""

    def __init__(self, monkeypatch):
        self.real = scan_mod.check_file
        self.calls = 0
        self.threads: set[int] = set()
        self.hold_at = None
        self.reached = threading.Event()
        self.release = threading.Event()
        monkeypatch.setattr(scan_mod, "check_file", self)

    def __call__(self, path, size=None):
        self.calls += 1
        self.threads.add(threading.get_ident())
        if self.calls == self.hold_at:
            self.reached.set()
            self.release.wait(30)
        return self.real(path, size)


@pytest.mark.parametrize("n", [10_000, pytest.param(100_000, marks=pytest.mark.long)])
def test_20_big_folder_scan_is_off_thread_cancellable_and_cached(n, tmp_path, qtbot, monkeypatch):
    from workbench import workers
    from workbench.editor import ExperimentEditor

    root = tmp_path / "big"
    bad = make_big_folder(root, n)
    assert len(bad) == n // 100
    spy = CheckSpy(monkeypatch)
    editor = ExperimentEditor()
    qtbot.addWidget(editor)
    picker = editor.source_picker()
    ticks = []
    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(lambda: ticks.append(1))
    timer.start()

    # First scan: held inside the worker after 700 checks while the GUI keeps running; cancel it.
    spy.hold_at = 700
    picker.set_folder(root)
    assert picker.scanning() and editor.model.value("data.source") == f"imagefolder:{root}"
    qtbot.waitUntil(spy.reached.is_set, timeout=60000)
    # The worker is parked mid-scan: the GUI thread keeps running and shows the progress it sent.
    qtbot.waitUntil(lambda: picker.scan_progress.value() > 0, timeout=10000)
    assert "checking" in picker.scan_label.text() and not picker.scan_progress.isHidden()
    assert picker.scan_progress.maximum() == 1000 and picker.scan_progress.value() < 1000
    ticks.clear()
    qtbot.waitUntil(lambda: len(ticks) >= 3, timeout=5000)    # the event loop is not blocked
    task = picker.task
    assert picker.scan_button.text() == "Cancel"
    qtbot.mouseClick(picker.scan_button, Qt.MouseButton.LeftButton)
    spy.release.set()
    qtbot.waitUntil(lambda: task.done, timeout=30000)
    assert task.result is None and picker.report is None and "cancelled" in picker.scan_label.text()
    assert picker.scan_progress.isHidden() and picker.scan_button.text() == "Rescan"
    checked_before_cancel = spy.calls
    assert checked_before_cancel < n
    assert threading.get_ident() not in spy.threads            # never on the GUI thread

    # Rescan: resumes from the verdicts the cancelled scan kept, then reports every bad file.
    spy.calls, spy.hold_at = 0, None
    qtbot.mouseClick(picker.scan_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: picker.report is not None, timeout=120000)
    report = picker.report
    assert report.images == n and report.good == n - len(bad)
    assert dict(report.bad) == bad
    assert report.cached >= 700 and spy.calls == n - report.cached
    assert f"{len(bad):,} unreadable" in picker.scan_label.text()
    assert sorted(report.classes) == [f"class{c}" for c in range(10)]

    # Unchanged files: nothing is opened again. A touched file is re-checked (key: size, mtime).
    spy.calls = 0
    again = scan_folder(f"imagefolder:{root}")
    assert again.cached == n and spy.calls == 0 and dict(again.bad) == bad
    touched = root / "class3" / "000003.jpg"
    os.utime(touched, ns=(touched.stat().st_atime_ns, touched.stat().st_mtime_ns + 10**9))
    (root / "class5" / "000005.jpg").write_bytes(b"")
    third = scan_folder(f"imagefolder:{root}")
    assert spy.calls == 2 and third.cached == n - 2
    assert dict(third.bad) == {**bad, "class5/000005.jpg": "empty file (0 bytes)"}
    timer.stop()
    assert workers.wait_all(10)


def test_20_aug_preview_decoding_reports_progress_and_stops_when_cancelled(tmp_path, qtbot, monkeypatch):
    """The preview decodes the picked folder in a worker: progress in its status line, only the
    few files it can show (a balanced sample, not the whole folder), and a cancelled preview
    delivers nothing and caches nothing."""
    import backend.data.imagefolder as imagefolder
    from backend.data.cache import cache_root
    from tests.workbench.conftest import quick_small
    from workbench.aug_preview import SAMPLE_PER_SHOWN, AugPreview
    from workbench.config_model import ConfigModel

    root = tmp_path / "folder"
    make_big_folder(root, 1500, classes=3)
    real_decode = imagefolder.decode_image
    calls, reached, release = [0], threading.Event(), threading.Event()

    def decode(path, size, *, max_pixels=None):
        calls[0] += 1
        if calls[0] == 5:
            reached.set()
            release.wait(30)
        return real_decode(path, size, max_pixels=max_pixels)

    monkeypatch.setattr(imagefolder, "decode_image", decode)
    model = ConfigModel(quick_small(data={"source": f"imagefolder:{root}", "val_fraction": 0.0}))
    preview = AugPreview(model)
    qtbot.addWidget(preview)
    preview.refresh()
    task = preview.task
    qtbot.waitUntil(reached.is_set, timeout=30000)
    qtbot.waitUntil(lambda: "decoding" in preview.status.text(), timeout=10000)
    task.cancel()
    release.set()
    qtbot.waitUntil(lambda: task.done, timeout=30000)
    assert task.result is None and task.error is None
    assert calls[0] <= SAMPLE_PER_SHOWN * preview.count.value()   # a sample, never the 1500 files
    entries = list(cache_root(ExperimentConfig().data).glob("imagefolder-*"))
    assert entries == []                                      # nothing half-decoded was cached
