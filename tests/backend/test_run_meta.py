"""Run meta (notes, tags, name, archive), delete into the trash, config diff."""

import json
import subprocess
import sys

import pytest

from backend.errors import WorkbenchError
from backend.run_lock import RunLock, RunLockedError
from backend.run_meta import (archive_run, config_diff, delete_run, display_name, read_meta, set_display_name,
                              set_notes, set_tags, update_meta)
from backend.run_queue import RunQueue
from tests.backend.trainer_helpers import make_run


def test_notes_tags_name_archive_persist(tmp_path):
    run = make_run(tmp_path, name="cfgname")
    assert read_meta(run) == {"name": "", "notes": "", "tags": [], "archived": False}
    assert display_name(run) == "cfgname"
    update_meta(run, sweep={"id": "s1", "point": {"optim.lr": 0.1}}, tags=["sweep:s1"])
    set_notes(run, "lr too high?")
    set_tags(run, ["a", "b", "a", " "])
    update_meta(run, tags=["c"])
    set_display_name(run, "  nice  ")
    archive_run(run)
    meta = json.loads((run / "meta.json").read_text())
    assert meta["notes"] == "lr too high?" and meta["tags"] == ["a", "b", "c"] and meta["archived"] is True
    assert meta["sweep"]["id"] == "s1" and display_name(run) == "nice"
    archive_run(run, False)
    assert read_meta(run)["archived"] is False


def test_delete_refused_while_a_live_process_holds_the_lock(tmp_path):
    run = make_run(tmp_path)
    code = ("import sys, time; from backend.run_lock import RunLock; "
            "RunLock(sys.argv[1], 'sslwb train').acquire(); print('held', flush=True); time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(run)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(RunLockedError, match=rf"cannot be deleted: it is in use by PID {proc.pid} .*sslwb train"):
            delete_run(run)
        assert run.is_dir()
    finally:
        proc.kill()
        proc.wait()
    RunQueue(tmp_path / "ws").enqueue([run])
    target = delete_run(run)
    assert not run.exists() and target.parent == tmp_path / "ws" / "trash" and (target / "config.json").exists()
    assert not (target / "writer.lock").exists() and RunQueue(tmp_path / "ws").entries() == []


def test_delete_refuses_paths_outside_the_runs_folder(tmp_path):
    run = make_run(tmp_path)
    with pytest.raises(WorkbenchError, match="not a run folder directly inside"):
        delete_run(run / "checkpoints")
    with pytest.raises(WorkbenchError, match="not a run folder directly inside"):
        delete_run(run, workspace=tmp_path / "other")
    other = tmp_path / "ws" / "runs" / "empty"
    other.mkdir()
    with pytest.raises(WorkbenchError, match="no config.json"):
        delete_run(other)
    with RunLock(run, "x"):
        pass
    assert delete_run(run, trash=False) is None and not run.exists()


def test_config_diff_reuses_the_report_fields(tmp_path):
    a, b = make_run(tmp_path, optim={"lr": 0.1}), make_run(tmp_path, optim={"lr": 0.2})
    fields, rows = config_diff([a, b])
    assert fields[:3] == ["method.name", "model.backbone", "data.source"] and "optim.lr" in fields
    assert [r["optim.lr"] for r in rows] == [0.1, 0.2]
    assert config_diff([a, b], differing_only=True)[0] == ["optim.lr"]
