"""Full disk at every write site but checkpoints (those: test_checkpoint_faults.py): events.jsonl,
metrics.h5, the data cache, embeddings caches and exports (docs/faults.md rows 21-26).

The full disk is injected per write site (``backend.faults``: ``enospc:SITE@step=K``, here set in
process) - the write stores half its bytes, then fails with ENOSPC - and, where root may mount
one, made real with a tiny tmpfs."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from backend import faults
from backend.errors import WriteError
from backend.events import read_events
from backend.runs import checkpoint_path, read_metrics_h5, summarize_run
from backend.train import run_training
from tests.backend.trainer_helpers import make_run, run_cli, stdout_events, tiny_config

NO_SPACE = "No space left on device"


def _disk_full(monkeypatch, site: str, step: int = 0) -> None:
    """From ``step`` on (0: now) the disk refuses writes at ``site``."""
    monkeypatch.setattr(faults, "_FULL", {site} if step == 0 else set())
    monkeypatch.setattr(faults, "_PLAN", {step: [faults.Fault("enospc", step, site)]} if step else {})


def _space_again(monkeypatch) -> None:
    monkeypatch.setattr(faults, "_FULL", set())
    monkeypatch.setattr(faults, "_PLAN", {})


def _every_line_complete(path) -> list[dict]:
    raw = path.read_bytes()
    assert raw.endswith(b"\n")
    lines = raw.decode().splitlines()
    assert all(json.loads(line)["kind"] for line in lines if line)  # no half line anywhere
    return read_events(path)


def test_21_events_jsonl_full_stops_cleanly_keeps_every_line_and_resumes(tmp_path, monkeypatch, capfd):
    run = make_run(tmp_path, schedule={"epochs": 3})   # 4 steps per epoch
    _disk_full(monkeypatch, "events", step=6)
    capfd.readouterr()
    assert run_training(run, echo=True) == 1
    captured = capfd.readouterr()
    assert "Traceback" not in captured.err
    echoed = stdout_events(captured.out)
    assert echoed[-1]["kind"] == "error" and echoed[-1]["exit_code"] == 1
    message = echoed[-1]["message"]
    assert message.startswith(f"could not write {run / 'events.jsonl'}: {NO_SPACE}; training stopped"), message
    events = _every_line_complete(run / "events.jsonl")
    assert not any(e["kind"] == "error" for e in events)    # the file refused it; stdout has it
    steps = [e["step"] for e in events if e.get("name") == "loss"]
    assert steps == sorted(set(steps)) and max(steps) <= 6
    assert checkpoint_path(run).is_file()                    # the epoch-1 checkpoint

    _space_again(monkeypatch)
    assert run_training(run, resume=True, echo=False) == 0
    _every_line_complete(run / "events.jsonl")
    assert summarize_run(run).state == "finished"


def test_22_metrics_h5_full_stops_cleanly_and_is_rebuilt_on_resume(tmp_path, monkeypatch):
    run = make_run(tmp_path, schedule={"epochs": 3})
    _disk_full(monkeypatch, "metrics", step=6)              # the epoch-2 update of metrics.h5 fails
    assert run_training(run, echo=False) == 1
    events = _every_line_complete(run / "events.jsonl")
    assert events[-1]["kind"] == "error"
    assert events[-1]["message"].startswith(f"could not write {run / 'metrics.h5'}: {NO_SPACE}; "), events[-1]
    if (run / "metrics.h5").exists():                        # removed when half-appended, else the old one
        read_metrics_h5(run / "metrics.h5")
    assert not (run / "metrics.h5.tmp").exists()

    _space_again(monkeypatch)
    assert run_training(run, resume=True, echo=False) == 0
    metrics = read_metrics_h5(run / "metrics.h5")
    assert metrics["loss"]["step"].max() == 12


def test_23_data_cache_full_leaves_no_half_entry_and_training_data_is_kept(tmp_path, monkeypatch):
    from backend.data.sources import load_dataset

    cfg = tiny_config(data={"cache_dir": str(tmp_path / "cache")}).data
    warnings = []
    _disk_full(monkeypatch, "cache")
    data = load_dataset(cfg, "train", on_warning=warnings.append)
    assert len(data) == cfg.synthetic_train_size               # decoded in memory all the same
    assert any(NO_SPACE in w and "decoded again next time" in w for w in warnings), warnings
    assert list((tmp_path / "cache").iterdir()) == []          # no entry, no temp folder

    _space_again(monkeypatch)
    load_dataset(cfg, "train")
    entries = list((tmp_path / "cache").iterdir())
    assert len(entries) == 1 and (entries[0] / "meta.json").is_file()


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    run = make_run(tmp_path_factory.mktemp("trained"), schedule={"epochs": 1})
    assert run_training(run, echo=False) == 0
    return run


def _files(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()) \
        if folder.exists() else []


def test_24_embeddings_cache_full_is_one_sentence_and_writes_nothing(trained_run, monkeypatch):
    from backend.inspect import compute_embeddings

    before = _files(trained_run / "inspect")
    _disk_full(monkeypatch, "embeddings")
    with pytest.raises(WriteError) as err:
        compute_embeddings(trained_run, limit=32)
    assert str(err.value).startswith("could not write ") and f": {NO_SPACE}; no embeddings cache" in str(err.value)
    assert _files(trained_run / "inspect") == before           # no half cache file, no temp file

    _space_again(monkeypatch)
    es = compute_embeddings(trained_run, limit=32)
    assert es.path.is_file() and not es.from_cache


def test_25_export_full_is_one_sentence_and_keeps_the_earlier_export(trained_run, monkeypatch):
    from backend.checkpoint import file_sha256
    from backend.export import export_encoder

    paths = export_encoder(trained_run, name="enc", formats=("safetensors",))
    folder = paths[0].parent
    kept = {name: file_sha256(folder / name) for name in _files(folder)}
    _disk_full(monkeypatch, "export")
    with pytest.raises(WriteError) as err:
        export_encoder(trained_run, name="enc", formats=("safetensors",))
    assert str(err.value).startswith(f"could not write {folder / 'encoder.safetensors'}: {NO_SPACE}; "
                                     "nothing was left half-written")
    assert {name: file_sha256(folder / name) for name in _files(folder)} == kept

    _space_again(monkeypatch)
    result = run_cli("export", "--run-dir", trained_run, "--name", "enc2", "--formats", "safetensors")
    assert result.returncode == 0, result.stderr


def _mount_tmpfs(path, size: str) -> bool:
    path.mkdir()
    if os.geteuid() != 0:
        return False
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True, timeout=10).returncode == 0


def test_26_real_full_filesystem_stops_with_one_sentence_and_trains_once_freed(tmp_path):
    small = tmp_path / "small"
    if not _mount_tmpfs(small, "16m"):
        pytest.skip("mounting a tmpfs needs root (mount -t tmpfs) and is not permitted here")
    try:
        run = make_run(small, schedule={"epochs": 1})
        filler = small / "filler"
        with open(filler, "wb") as fh:                         # leave about 48 KB free
            stat = os.statvfs(small)
            fh.write(b"\0" * max(0, stat.f_bavail * stat.f_frsize - 48 * 1024))
        result = run_cli("train", "--run-dir", run, "--no-stdin")
        assert result.returncode in (1, 2), result.stderr[-2000:]
        assert "Traceback" not in result.stderr
        assert NO_SPACE in result.stdout + result.stderr
        if (run / "events.jsonl").exists():
            _every_line_complete(run / "events.jsonl")
        filler.unlink()
        again = run_cli("train", "--run-dir", run, "--no-stdin")
        assert again.returncode == 0, again.stderr[-2000:]
        assert summarize_run(run).state == "finished"
    finally:
        subprocess.run(["umount", "-l", str(small)], capture_output=True, timeout=10)
