"""Fault suite, scenarios 1-7 of docs/faults.md: checkpoints and security.

Every scenario goes through the paths a user takes: the CLI (``python -m backend ...`` as a
subprocess, or ``backend.cli.main`` in-process where many variants are checked), the trainer
(``run_training``), and the GUI's own runs-browser -> Inspect window and Resume paths (pytest-qt).
One tiny run is trained once per module and copied into each test.
"""

from __future__ import annotations

import errno
import io
import json
import os
import pickletools
import random
import shutil
import signal
import struct
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import torch

from backend import cli
from backend.checkpoint import TEMP_MARK, file_sha256, load_checkpoint, save_checkpoint
from backend.errors import CheckpointError
from backend.events import read_events
from backend.export import load_encoder
from backend.runs import checkpoint_path, read_metrics_h5
from backend.train import run_training
from tests.backend.trainer_helpers import ROOT, make_run, run_cli_in_process, stdout_events
from tests.workbench.conftest import private_settings, window, workspace  # noqa: F401 - Qt fixtures

BASE = {"data": {"synthetic_train_size": 64, "synthetic_test_size": 32},
        "optim": {"batch_size": 32}, "schedule": {"epochs": 1, "warmup_epochs": 0},
        "eval": {"probe_batch_size": 32, "knn_every_epochs": 0, "knn_k": 5}}
STEPS_PER_EPOCH = 2            # 64 training images / batch 32
GUI_TIMEOUT_MS = 90000         # a trainer subprocess on a busy 2-core machine


# ---- helpers: runs, files, snapshots ---------------------------------------------------------------
@pytest.fixture(scope="module")
def base_run(tmp_path_factory) -> Path:
    """A tiny simclr/tiny_cnn run trained for one epoch: config.json, events, last.pt + its hash."""
    run = make_run(tmp_path_factory.mktemp("base"), **BASE)
    assert run_training(run, echo=False) == 0, (run / "events.jsonl").read_text()[-2000:]
    return run


def copy_run(base: Path, workspace: Path) -> Path:
    """A private copy of ``base`` under ``workspace/runs`` (where the GUI looks for runs)."""
    dest = workspace / "runs" / base.name
    shutil.copytree(base, dest)
    return dest


def set_config(run: Path, **fields) -> None:
    """Edit the run's config.json in place: ``set_config(run, **{"schedule.epochs": 3})``."""
    payload = json.loads((run / "config.json").read_text())
    for dotted, value in fields.items():
        section, name = dotted.split(".")
        payload["config"][section][name] = value
    (run / "config.json").write_text(json.dumps(payload, indent=2))


def snapshot(folder: Path) -> dict[str, str]:
    """{relative path: sha256} of every file under ``folder``."""
    return {str(p.relative_to(folder)): file_sha256(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def events_of(run: Path) -> list[dict]:
    return read_events(run / "events.jsonl")


def new_events(run: Path, before: list[dict]) -> list[dict]:
    """Events appended since ``before`` was read (the earlier ones must be untouched)."""
    now = events_of(run)
    assert now[: len(before)] == before, "earlier events were changed"
    return now[len(before):]


def temp_files(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if TEMP_MARK in p.name]


def flip_byte_in_tensor_data(path: Path) -> int:
    """Flip one byte in the middle of the largest tensor record of a torch zip checkpoint."""
    with zipfile.ZipFile(path) as zf:
        info = max((i for i in zf.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    data = bytearray(path.read_bytes())
    name_len, extra_len = struct.unpack("<HH", data[info.header_offset + 26: info.header_offset + 30])
    offset = info.header_offset + 30 + name_len + extra_len + info.file_size // 2
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))
    return offset


def flip_byte_after_safetensors_header(path: Path) -> int:
    """Flip one byte in the tensor data of a safetensors file (after its JSON header)."""
    data = bytearray(path.read_bytes())
    start = 8 + int.from_bytes(data[:8], "little")
    offset = start + (len(data) - start) // 2
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))
    return offset


def absurd_safetensors_bytes() -> bytes:
    """A safetensors-looking file whose 8-byte little-endian header length is 2**60."""
    return struct.pack("<Q", 2 ** 60) + b'{"__metadata__": {"format": "pt"}}' + b"\0" * 64


def jpeg_bytes() -> bytes:
    from PIL import Image
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 30, 30)).save(buf, format="JPEG")
    return buf.getvalue()


def onnx_model_bytes() -> bytes:
    """A serialised ONNX ModelProto laid out as torch's exporter writes it (ir_version 8,
    producer 'pytorch', an empty graph, opset 17); written by hand: the onnx package is optional."""
    graph = b"\x12\x0amain_graph"                        # GraphProto.name
    return (b"\x08\x08" + b"\x12\x07pytorch" + b"\x1a\x062.14.1"
            + b"\x3a" + bytes([len(graph)]) + graph + b"\x42\x02\x10\x11")


def single_error_line(stderr: str, names: Path) -> str:
    """The CLI's one-sentence error: exactly one non-empty stderr line, 'error: ...', naming the file."""
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    assert str(names) in lines[0] and "Traceback" not in stderr, stderr
    return lines[0]


def run_main(capsys, *args) -> tuple[int, str]:
    """``sslwb ARGS`` in-process (backend.cli.main): (exit code, stderr)."""
    result = run_cli_in_process(capsys, *args)
    return result.returncode, result.stderr


def cli_process(*args) -> subprocess.Popen:
    """``python -m backend ARGS`` as a subprocess (stdin closed, output captured)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "backend", *map(str, args)], cwd=ROOT, env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def error_event(stdout: str) -> dict:
    """The single error event a trainer printed on stdout."""
    errors = [e for e in stdout_events(stdout) if e.get("kind") == "error"]
    assert len(errors) == 1, stdout[-3000:]
    return errors[0]


@pytest.fixture
def torch_load_calls(monkeypatch) -> list:
    """Record the ``weights_only`` argument of every ``torch.load`` call made in this process."""
    calls = []
    real = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    return calls


# ---- the pickle payload -------------------------------------------------------------------------------
class CreatesMarkerWhenUnpickled:
    """A pickle payload: unpickling it calls ``open(marker, "w")``, i.e. creates the marker file (any
    code could stand there). Safe loading must refuse it without running it."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def plant_payload(path: Path, marker: Path) -> Path:
    """Rewrite the checkpoint at ``path`` as the real one plus a payload, with a matching hash
    sidecar (as an attacker who replaces the file would), so only safe unpickling stands in the way."""
    state = load_checkpoint(path)
    state["method_extras"] = {"payload": CreatesMarkerWhenUnpickled(marker)}
    save_checkpoint(state, path)
    with zipfile.ZipFile(path) as zf:
        pkl = zf.read(next(n for n in zf.namelist() if n.endswith("data.pkl")))
    listing = io.StringIO()
    pickletools.dis(pkl, out=listing)  # reads opcodes, runs nothing
    text = listing.getvalue()
    assert "GLOBAL     'io open'" in text and "REDUCE" in text and repr(str(marker)) in text, "the payload is not armed"
    return path


# =====================================================================================================
# 1. A checkpoint carrying a pickle payload
# =====================================================================================================
def test_pickle_payload_is_refused_by_the_cli_and_the_trainer(base_run, tmp_path):
    """`sslwb eval` and `sslwb train --resume` as real subprocesses (side by side): non-zero exit, one
    sentence saying it is not a plain weights file, marker never created, run files untouched."""
    run = copy_run(base_run, tmp_path / "ws")
    marker = tmp_path / "MARKER"
    evil = plant_payload(checkpoint_path(run), marker)
    before, events_before = snapshot(run), events_of(run)
    evaluate = cli_process("eval", "--run-dir", run, "--k", "5")
    resume = cli_process("train", "--run-dir", run, "--resume", "--no-stdin")
    out, err = evaluate.communicate(timeout=180)
    assert evaluate.returncode == 1, (out, err)
    messages = [single_error_line(err, evil)]
    out, err = resume.communicate(timeout=180)
    assert resume.returncode == 1 and "Traceback" not in err, (out[-2000:], err[-2000:])
    messages.append(error_event(out)["message"])    # the trainer reports through its event stream
    for message in messages:
        assert "not a plain weights file" in message and str(evil) in message, message
        assert "weights_only" not in message, "the user must not be nudged to turn safe loading off"
    assert not marker.exists(), "the payload ran"
    after = snapshot(run)
    assert after.pop("events.jsonl") != before.pop("events.jsonl") and after == before
    assert [e["kind"] for e in new_events(run, events_before)] == ["error"]  # refused before training


def test_torch_load_only_ever_runs_with_weights_only(base_run, tmp_path, capsys, torch_load_calls):
    """eval / inspect / export (backend.cli.main in-process) and the trainer on the payload: each
    refuses with one sentence, makes exactly one torch.load call, with weights_only=True (no retry
    another way), and the marker is never created; a good checkpoint loads the same safe way."""
    run = copy_run(base_run, tmp_path / "ws")
    marker = tmp_path / "MARKER"
    evil = plant_payload(checkpoint_path(run), marker)
    commands = {
        "eval": ["eval", "--run-dir", run, "--k", "5"],
        "inspect embeddings": ["inspect", "--run-dir", run, "embeddings", "--limit", "8", "--projection", "none"],
        "inspect linear-probe": ["inspect", "--run-dir", run, "linear-probe", "--epochs", "2"],
        "export": ["export", "--run-dir", run, "--formats", "safetensors"],
    }
    for name, args in commands.items():
        del torch_load_calls[:]
        code, err = run_main(capsys, *args)
        assert code == 1 and "not a plain weights file" in single_error_line(err, evil), (name, err)
        assert torch_load_calls == [True], (name, torch_load_calls)
    del torch_load_calls[:]
    assert run_training(run, resume=True, echo=False) == 1
    assert torch_load_calls == [True], torch_load_calls
    assert "not a plain weights file" in events_of(run)[-1]["message"]
    assert not marker.exists() and not (run / "export").exists()

    shutil.copy(checkpoint_path(base_run), evil)
    shutil.copy(checkpoint_path(base_run).with_name("last.pt.sha256"), evil.with_name("last.pt.sha256"))
    del torch_load_calls[:]
    code, err = run_main(capsys, "eval", "--run-dir", run, "--k", "5")
    assert code == 0, err
    assert torch_load_calls and all(c is True for c in torch_load_calls), torch_load_calls


def _visible_dialogs() -> list:
    from PySide6.QtWidgets import QApplication, QDialog, QMessageBox
    return [w for w in QApplication.topLevelWidgets()
            if isinstance(w, (QDialog, QMessageBox)) and w.isVisible()]


def test_pickle_payload_in_the_gui_is_refused_and_the_gui_stays_responsive(
        base_run, window, workspace, qtbot, tmp_path, torch_load_calls):
    """Runs browser -> Inspect (workers in threads, as in the app) and Resume: the refusal is shown in
    the window, no modal dialog, the event loop keeps running, the marker is never created."""
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    run = copy_run(base_run, workspace)
    marker = tmp_path / "MARKER"
    evil = plant_payload(checkpoint_path(run), marker)
    window.browser.refresh()
    window.browser.inspectRequested.emit(run)
    inspect = next(iter(window.inspect_windows.values()))
    qtbot.waitExposed(inspect)

    rows = inspect.evaluation.table.rowCount()      # evaluations the run already holds
    inspect.embeddings.compute()
    # The load runs in a worker: when compute() returns, the GUI thread has not seen the result yet.
    assert "not a plain weights file" not in inspect.embeddings.taskbar.text()
    inspect.evaluation.knn_button.click()
    fired = []
    QTimer.singleShot(0, lambda: fired.append("during"))
    for view in (inspect.embeddings, inspect.evaluation):
        qtbot.waitUntil(lambda v=view: "not a plain weights file" in v.taskbar.text(), timeout=60000)
        text = view.taskbar.text()
        assert str(evil) in text and "Traceback" not in text and "\n" not in text, text
        assert "c62828" in view.taskbar.label.styleSheet()  # shown as an error
    assert fired == ["during"], "the event loop did not run while the checkpoint was being refused"
    assert inspect.embeddings.state is None and inspect.evaluation.table.rowCount() == rows
    assert QApplication.activeModalWidget() is None and _visible_dialogs() == []

    panel = window.resume_run(run)
    state = panel.state
    qtbot.waitUntil(lambda: not state.live, timeout=GUI_TIMEOUT_MS)
    assert state.state == "error" and "not a plain weights file" in state.message, (state.state, state.message)
    assert "not a plain weights file" in panel.message.text()
    QTimer.singleShot(0, lambda: fired.append("after"))
    qtbot.waitUntil(lambda: fired == ["during", "after"], timeout=5000)  # still processing events
    assert QApplication.activeModalWidget() is None and _visible_dialogs() == []
    assert not marker.exists(), "the payload ran"
    assert torch_load_calls and all(c is True for c in torch_load_calls), torch_load_calls


# =====================================================================================================
# 2. Damaged checkpoints
# =====================================================================================================
def _truncated(fraction):
    return lambda good: good[: int(len(good) * fraction)]


DAMAGE = {  # name -> (file name, bytes from the good checkpoint, words of the CLI's error, of the resume's)
    "truncated-10": ("broken.pt", _truncated(0.10), "truncated or damaged", "recorded content hash"),
    "truncated-50": ("broken.pt", _truncated(0.50), "truncated or damaged", "recorded content hash"),
    "truncated-99": ("broken.pt", _truncated(0.99), "truncated or damaged", "recorded content hash"),
    "empty": ("broken.pt", lambda good: b"", "empty (0 bytes)", "empty (0 bytes)"),
    "jpeg-renamed": ("photo.pt", lambda good: jpeg_bytes(), "JPEG image", "JPEG image"),
    "absurd-safetensors": ("weights.safetensors", lambda good: absurd_safetensors_bytes(),
                           "header length", "header length"),
}


@pytest.mark.parametrize("kind", list(DAMAGE))
def test_damaged_checkpoint_gives_one_clear_error_and_changes_nothing(base_run, tmp_path, capsys, kind):
    """eval / inspect / export --checkpoint FILE and train --resume over a damaged last.pt: one
    sentence naming the file; no file of the run changes (the trainer only appends its error event)."""
    name, make, cli_words, resume_words = DAMAGE[kind]
    run = copy_run(base_run, tmp_path / "ws")
    good = checkpoint_path(run).read_bytes()
    broken = run / "checkpoints" / name
    broken.write_bytes(make(good))
    checkpoint_path(run).write_bytes(make(good))       # the same damage in place (its hash file stays)
    before, events_before = snapshot(run), events_of(run)

    for args in (["eval", "--run-dir", run, "--checkpoint", broken, "--k", "5"],
                 ["inspect", "--run-dir", run, "--checkpoint", broken, "embeddings", "--projection", "none"],
                 ["export", "--run-dir", run, "--checkpoint", broken, "--formats", "safetensors"]):
        code, err = run_main(capsys, *args)
        assert code == 1, (args[0], err)
        assert cli_words in single_error_line(err, broken), (args[0], err)

    assert run_training(run, resume=True, echo=False) == 1
    added = new_events(run, events_before)
    assert [e["kind"] for e in added] == ["error"], added          # refused before anything started
    assert resume_words in added[0]["message"] and str(checkpoint_path(run)) in added[0]["message"]
    after = snapshot(run)
    after.pop("events.jsonl"), before.pop("events.jsonl")
    assert after == before


def test_absurd_safetensors_header_is_a_clear_error_not_a_memory_error(tmp_path, capsys, base_run):
    """load_encoder and the CLI on a file whose 8-byte header length says 2**60: a CheckpointError
    naming the file and the impossible length, never MemoryError or a traceback."""
    path = tmp_path / "encoder.safetensors"
    path.write_bytes(absurd_safetensors_bytes())
    for target in (path, tmp_path):          # the file, and the export folder holding it
        with pytest.raises(CheckpointError) as info:
            load_encoder(target)
        assert str(path) in str(info.value) and str(2 ** 60) in str(info.value), info.value
    code, err = run_main(capsys, "eval", "--run-dir", base_run, "--checkpoint", path, "--k", "5")
    assert code == 1 and "header length" in single_error_line(err, path)


def test_damaged_checkpoints_in_the_inspect_window_leave_the_session_as_it_was(base_run, window, workspace, qtbot):
    """An open run tab and an Inspect window with computed embeddings and a kNN result: choosing each
    damaged checkpoint shows one red sentence naming it; the shown results, the run tab and the run's
    files stay as they were, and the good checkpoint still works afterwards."""
    from workbench import workers

    workers.set_synchronous(True)
    run = copy_run(base_run, workspace)
    last = checkpoint_path(run)
    good = last.read_bytes()
    damaged = []   # (path, words of the error)
    for i, (kind, (_, make, words, _)) in enumerate(DAMAGE.items(), start=1):
        path = run / "checkpoints" / (f"epoch-{i:04d}.pt" if kind != "absurd-safetensors" else "weights.safetensors")
        path.write_bytes(make(good))
        damaged.append((path, words))
    flipped = save_checkpoint(load_checkpoint(last), run / "checkpoints" / "epoch-0009.pt")  # with its hash
    flip_byte_in_tensor_data(flipped)
    damaged.append((flipped, "recorded content hash"))

    panel = window.open_run(run)
    tab_before = (panel.state.state, panel.state.step, panel.state.message, window.tabs.count())
    inspect = window.inspect_run(run)
    assert inspect.context.checkpoint == last
    view = inspect.embeddings
    view.projection.setCurrentIndex(view.projection.findData("pca"))  # UMAP's JIT alone takes ~20 s
    inspect.embeddings.compute()
    shown = inspect.embeddings.state
    assert shown is not None, inspect.embeddings.taskbar.text()
    rows = inspect.evaluation.table.rowCount()      # evaluations the run already holds
    inspect.evaluation.knn_button.click()
    assert inspect.evaluation.table.rowCount() == rows + 1, inspect.evaluation.taskbar.text()
    rows += 1
    files_before = snapshot(run)

    for path, words in damaged:
        index = inspect.checkpoint.index_of(path)
        assert index >= 0 or path.suffix == ".safetensors", f"{path.name} is not in the checkpoint list"
        if index >= 0:
            inspect.checkpoint.setCurrentIndex(index)           # picked in the window's checkpoint list
        else:
            inspect.context.set_checkpoint(path)                # a file from elsewhere
        assert inspect.context.checkpoint == path
        inspect.embeddings.compute()
        inspect.evaluation.knn_button.click()
        for view in (inspect.embeddings, inspect.evaluation):
            text = view.taskbar.text()
            assert str(path) in text and words in text, (path.name, text)
            assert "Traceback" not in text and "\n" not in text and "c62828" in view.taskbar.label.styleSheet()
        assert inspect.embeddings.state is shown and inspect.evaluation.table.rowCount() == rows

    assert snapshot(run) == files_before
    assert (panel.state.state, panel.state.step, panel.state.message, window.tabs.count()) == tab_before
    inspect.checkpoint.setCurrentIndex(inspect.checkpoint.index_of(last))
    inspect.embeddings.compute()
    assert inspect.embeddings.state is not shown and inspect.embeddings.state is not None
    assert "c62828" not in inspect.embeddings.taskbar.label.styleSheet()


# =====================================================================================================
# 3. A flipped byte in tensor data is detected before use
# =====================================================================================================
def test_flipped_byte_in_a_checkpoint_is_detected_before_use(base_run, tmp_path, capsys, torch_load_calls):
    run = copy_run(base_run, tmp_path / "ws")
    last = checkpoint_path(run)
    assert last.with_name("last.pt.sha256").read_text().split()[0] == file_sha256(last)  # hash beside it
    flip_byte_in_tensor_data(last)
    for args in (["eval", "--run-dir", run, "--k", "5"],
                 ["export", "--run-dir", run, "--formats", "safetensors"]):
        code, err = run_main(capsys, *args)
        assert code == 1 and "does not match its recorded content hash" in single_error_line(err, last), err
    assert run_training(run, resume=True, echo=False) == 1
    assert "recorded content hash" in events_of(run)[-1]["message"]
    assert torch_load_calls == [], "the damaged file was unpickled before its hash was checked"
    assert not (run / "export").exists()


def test_flipped_byte_in_an_export_is_detected_before_use(base_run, tmp_path, capsys, monkeypatch):
    run = copy_run(base_run, tmp_path / "ws")
    out = tmp_path / "exported"
    code, err = run_main(capsys, "export", "--run-dir", run, "--out", out, "--formats", "safetensors", "torchscript")
    assert code == 0, err
    probe = torch.rand(2, 3, 32, 32)
    for name in ("encoder.safetensors", "encoder.torchscript.pt"):
        artifact = out / name
        recorded = artifact.with_name(name + ".sha256").read_text().split()[0]
        assert recorded == file_sha256(artifact)                      # the hash written beside it
        assert load_encoder(artifact)(probe).shape[0] == 2            # loads before the damage

    safetensors = out / "encoder.safetensors"
    flip_byte_after_safetensors_header(safetensors)
    for target in (safetensors, out):
        with pytest.raises(CheckpointError, match="does not match its recorded hash") as info:
            load_encoder(target)
        assert str(safetensors) in str(info.value)

    scripted = out / "encoder.torchscript.pt"
    flip_byte_in_tensor_data(scripted)
    jit_loads = []
    monkeypatch.setattr(torch.jit, "load", lambda *a, **k: jit_loads.append(a) or pytest.fail("jit.load ran"))
    with pytest.raises(CheckpointError, match="does not match its recorded hash"):
        load_encoder(scripted)
    assert jit_loads == []


# =====================================================================================================
# 4. SIGKILL during a checkpoint save
# =====================================================================================================
def _big_model(megabytes: int) -> dict:
    """Random float32 tensors adding up to about ``megabytes`` MB."""
    gen = torch.Generator().manual_seed(0)
    return {f"layer{i}.weight": torch.rand(1 << 20, generator=gen).reshape(1024, 1024)
            for i in range(megabytes // 4)}


def _save_forever_in_a_child(model: dict, target: Path, first_version: int) -> int:
    """Fork a child that saves ``model`` to ``target`` with versions first_version, +1, ... forever."""
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            version = first_version
            while True:
                save_checkpoint({"model": model, "step": version}, target)
                version += 1
        finally:
            os._exit(0)
    return pid


def _kill_saves_and_verify(folder: Path, kills: int, seed: int, megabytes: int = 64) -> dict:
    """SIGKILL a saving child at ``kills`` random moments; after each, last.pt must load, match its
    hash, hold the full model and a version no older than the previous one."""
    rng = random.Random(seed)
    model = _big_model(megabytes)
    target = folder / "last.pt"
    start = time.perf_counter()
    save_checkpoint({"model": model, "step": 0}, target)
    save_seconds = time.perf_counter() - start
    committed, killed_mid_write, versions = 0, 0, []
    for _ in range(kills):
        stale_before = set(temp_files(folder))
        pid = _save_forever_in_a_child(model, target, committed + 1)
        time.sleep(rng.uniform(0.0, 2.0 * save_seconds))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        killed_mid_write += bool(set(temp_files(folder)) - stale_before)   # this child left a partial file
        state = load_checkpoint(target)          # complete archive, hash verified
        assert state["step"] >= committed, (state["step"], committed)
        assert state["model"].keys() == model.keys()
        assert all(torch.equal(state["model"][k], model[k]) for k in model), "the final name holds other data"
        committed = state["step"]
        versions.append(committed)
    return {"killed_mid_write": killed_mid_write, "versions": versions, "save_seconds": save_seconds}


def _stale_files_go_on_next_start(base_run: Path, tmp_path: Path, stale: list[Path]) -> None:
    """Move ``stale`` temp files into a real run's checkpoints folder and start (resume) it: the
    trainer removes them and says so."""
    run = copy_run(base_run, tmp_path / "ws")
    for p in stale:
        p.rename(run / "checkpoints" / p.name)
    before = events_of(run)
    assert run_training(run, resume=True, echo=False) == 0
    assert temp_files(run / "checkpoints") == []
    notes = [e["message"] for e in new_events(run, before) if e["kind"] == "log" and "stale" in e["message"]]
    assert notes == [f"removed {len(stale)} stale temporary checkpoint file(s) from an interrupted save"], notes


def test_sigkill_during_checkpoint_saves_never_leaves_a_partial_last_checkpoint(base_run, tmp_path):
    folder = tmp_path / "kills"
    folder.mkdir()
    result = _kill_saves_and_verify(folder, kills=20, seed=8)
    assert result["killed_mid_write"] >= 1, result     # some kills did land inside a save
    assert result["versions"][-1] >= 1, result          # and some saves did commit
    stale = temp_files(folder)
    assert stale, result
    _stale_files_go_on_next_start(base_run, tmp_path, stale)


@pytest.mark.long
def test_sigkill_during_checkpoint_saves_many_times(base_run, tmp_path):
    folder = tmp_path / "kills"
    folder.mkdir()
    result = _kill_saves_and_verify(folder, kills=150, seed=80, megabytes=96)
    assert result["killed_mid_write"] >= 20, result
    _stale_files_go_on_next_start(base_run, tmp_path, temp_files(folder))


# =====================================================================================================
# 5. Disk full or read-only run directory
# =====================================================================================================
def test_disk_full_during_a_checkpoint_stops_cleanly_and_keeps_the_last_one(
        base_run, window, workspace, qtbot, monkeypatch, capfd):
    """The epoch-2 checkpoint hits ENOSPC half way: an error event says so, training stops there,
    last.pt (epoch 1), events and metrics.h5 stay valid, no temp file is left, the GUI shows the
    error on the run, and once there is space again the run resumes from the kept checkpoint."""
    run = copy_run(base_run, workspace)
    set_config(run, **{"schedule.epochs": 3})
    last = checkpoint_path(run)
    kept, events_before = file_sha256(last), events_of(run)
    metrics_before = read_metrics_h5(run / "metrics.h5")
    real_save = torch.save

    def save_until_the_disk_is_full(obj, f, *args, **kwargs):
        buf = io.BytesIO()
        real_save(obj, buf, *args, **kwargs)
        f.write(buf.getvalue()[: buf.tell() // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(torch, "save", save_until_the_disk_is_full)
    capfd.readouterr()
    assert run_training(run, resume=True, echo=False) == 1
    assert "Traceback" not in capfd.readouterr().err
    added = new_events(run, events_before)
    assert added[-1]["kind"] == "error" and [e["kind"] for e in added].count("error") == 1
    message = added[-1]["message"]
    assert "No space left on device" in message and "previous checkpoint is kept" in message, message
    assert str(run / "checkpoints") in message
    steps = sorted({e["step"] for e in added if e["kind"] == "metric" and e["name"] == "loss"})
    assert steps == [3, 4], steps                                  # stopped at the failed save
    assert not any(e.get("state") in ("finished", "checkpoint") for e in added)
    assert file_sha256(last) == kept and load_checkpoint(last)["step"] == STEPS_PER_EPOCH
    assert temp_files(run / "checkpoints") == []
    metrics = read_metrics_h5(run / "metrics.h5")                  # still readable, still the old one
    assert metrics.keys() == metrics_before.keys()
    assert all((metrics[n]["step"] == metrics_before[n]["step"]).all() for n in metrics)

    panel = window.open_run(run)
    assert panel.state.state == "error" and "No space left on device" in panel.state.message

    monkeypatch.setattr(torch, "save", real_save)                  # space again: resume works
    assert run_training(run, resume=True, echo=False) == 0
    assert load_checkpoint(last)["step"] == 3 * STEPS_PER_EPOCH


def _without_root_override() -> list[str] | None:
    """A command prefix under which file permissions apply (root's override dropped), [] when not
    root, None when that cannot be arranged here."""
    if os.geteuid() != 0:
        return []
    capsh = shutil.which("capsh")
    if capsh is None:
        return None
    return [capsh, "--drop=cap_dac_override,cap_dac_read_search,cap_fowner", "--", "-c", 'exec "$0" "$@"']


@pytest.mark.parametrize("read_only", ["checkpoints folder", "run folder"])
def test_read_only_run_directory_is_reported_before_training(base_run, tmp_path, read_only):
    """`sslwb train --resume` on a run whose folder cannot be written: one error naming the folder
    before any training step; last.pt stays valid."""
    prefix = _without_root_override()
    if prefix is None:
        pytest.skip("running as root without capsh: chmod cannot make a folder read-only for this process")
    run = copy_run(base_run, tmp_path / "ws")
    set_config(run, **{"schedule.epochs": 2})
    folder = run / "checkpoints" if read_only == "checkpoints folder" else run
    kept, events_before = file_sha256(checkpoint_path(run)), events_of(run)
    folder.chmod(0o555)
    try:
        probe = subprocess.run([*prefix, "touch", str(folder / "probe")], capture_output=True)
        if probe.returncode == 0:
            pytest.skip(f"{folder} stays writable for this user even after chmod 555 (root override)")
        proc = subprocess.run([*prefix, sys.executable, "-m", "backend", "train", "--run-dir", str(run), "--resume",
                               "--no-stdin"], cwd=ROOT, capture_output=True, text=True, timeout=180,
                              env=dict(os.environ, PYTHONUNBUFFERED="1"))
    finally:
        folder.chmod(0o755)
    assert proc.returncode == 1, (proc.stdout[-2000:], proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr, proc.stderr
    message = error_event(proc.stdout)["message"]
    # A read-only run folder is met first by the writer lock (one writer per run), which names the
    # lock file inside it; a read-only checkpoints folder by the writability check.
    assert (f"cannot write in {folder}: Permission denied" in message
            or (f"cannot write its lock file {folder}/" in message and "Permission denied" in message)), message
    added = new_events(run, events_before)
    assert [e["kind"] for e in added] == ["error"], added        # no step, no status: refused up front
    assert file_sha256(checkpoint_path(run)) == kept and load_checkpoint(checkpoint_path(run))["step"] == 2


# =====================================================================================================
# 6. Resume with different settings
# =====================================================================================================
CHANGES = {"model.backbone": "resnet18", "method.name": "byol", "data.image_size": 64, "data.source": "cifar10"}


@pytest.mark.parametrize("key", list(CHANGES))
def test_resume_with_a_different_setting_is_refused_before_training(base_run, tmp_path, key):
    run = copy_run(base_run, tmp_path / "ws")
    set_config(run, **{key: CHANGES[key]})
    before, events_before = snapshot(run), events_of(run)
    assert run_training(run, resume=True, echo=False) == 2
    added = new_events(run, events_before)
    assert [e["kind"] for e in added] == ["error"], added         # before data, model or any step
    message = added[0]["message"]
    assert message.startswith("cannot resume: the checkpoint was trained with different settings")
    assert f"{key} (checkpoint " in message and repr(CHANGES[key]) in message, message
    after = snapshot(run)
    after.pop("events.jsonl"), before.pop("events.jsonl")
    assert after == before                                          # config.json not rewritten either


def test_gui_resume_with_different_settings_lists_every_mismatch(base_run, window, workspace, qtbot):
    run = copy_run(base_run, workspace)
    set_config(run, **CHANGES)
    kept = file_sha256(checkpoint_path(run))
    panel = window.resume_run(run)
    qtbot.waitUntil(lambda: not panel.state.live, timeout=GUI_TIMEOUT_MS)
    assert panel.state.state == "error", (panel.state.state, panel.state.message)
    assert panel.state.exit_code == 2
    for key, value in CHANGES.items():
        assert f"{key} (checkpoint " in panel.state.message and repr(value) in panel.state.message, key
    assert not any(e["kind"] == "metric" and e["step"] > STEPS_PER_EPOCH for e in events_of(run))
    assert file_sha256(checkpoint_path(run)) == kept


# =====================================================================================================
# 7. An exported model chosen as a checkpoint
# =====================================================================================================
@pytest.fixture(scope="module")
def exported(base_run, tmp_path_factory) -> Path:
    """The base run's encoder exported (safetensors + TorchScript) by the CLI, plus a hand-made ONNX."""
    out = tmp_path_factory.mktemp("export")
    assert cli.main(["export", "--run-dir", str(base_run), "--out", str(out),
                     "--formats", "safetensors", "torchscript"]) == 0
    (out / "encoder.onnx").write_bytes(onnx_model_bytes())
    return out


EXPORTS = {"encoder.torchscript.pt": "(TorchScript)", "encoder.onnx": "(ONNX)", "encoder.safetensors": "(safetensors)"}


@pytest.mark.parametrize("name", list(EXPORTS))
def test_exported_model_as_a_checkpoint_is_named_as_such(base_run, exported, tmp_path, capsys, name):
    """Picked with --checkpoint, or copied over last.pt and resumed (its old hash file left beside
    it, as a copy would): "this is an exported model", nothing loaded or changed."""
    run = copy_run(base_run, tmp_path / "ws")
    artifact = exported / name
    code, err = run_main(capsys, "eval", "--run-dir", run, "--checkpoint", artifact, "--k", "5")
    line = single_error_line(err, artifact)
    assert code == 1 and "this is an exported model" in line and EXPORTS[name] in line, line

    last = checkpoint_path(run)
    shutil.copy(artifact, last)
    events_before = events_of(run)
    assert run_training(run, resume=True, echo=False) == 1
    added = new_events(run, events_before)
    assert [e["kind"] for e in added] == ["error"], added
    assert "this is an exported model" in added[0]["message"] and EXPORTS[name] in added[0]["message"]
    assert str(last) in added[0]["message"]


def test_exported_model_in_the_gui_inspect_and_resume(base_run, window, workspace, qtbot, exported):
    from workbench import workers
    from workbench.inspect_window import InspectWindow

    workers.set_synchronous(True)
    run = copy_run(base_run, workspace)
    scripted = exported / "encoder.torchscript.pt"
    inspect = InspectWindow(run, checkpoint=scripted, parent=window)
    qtbot.addWidget(inspect)
    inspect.embeddings.compute()
    text = inspect.embeddings.taskbar.text()
    assert "this is an exported model (TorchScript)" in text and str(scripted) in text, text
    assert inspect.embeddings.state is None

    shutil.copy(scripted, checkpoint_path(run))
    panel = window.resume_run(run)
    qtbot.waitUntil(lambda: not panel.state.live, timeout=GUI_TIMEOUT_MS)
    assert panel.state.state == "error", (panel.state.state, panel.state.message)
    assert "this is an exported model (TorchScript)" in panel.state.message, panel.state.message
    inspect.close()
