"""The trainer: exact resume, stop/SIGTERM/SIGKILL behaviour, exit codes and error events."""

import signal
import subprocess

import pytest

from backend.checkpoint import load_checkpoint
from backend.control import TrainerControl
from backend.events import read_events
from backend.runs import checkpoint_path, summarize_run
from backend.train import run_training

from .trainer_helpers import (losses_by_step, make_run, run_cli, start_trainer, stdout_events,
                              wait_for_event)


class StopAfter(TrainerControl):
    """Requests a stop once ``steps`` optimisation steps have run."""

    def __init__(self, steps):
        super().__init__(read_stdin=False)
        self.calls, self.steps = 0, steps

    def wait_while_paused(self, on_pause=None, on_resume=None, on_checkpoint=None):
        if self.calls == self.steps:
            self.request("stop", reason="test stop")
        self.calls += 1


def check_resume_is_exact(tmp_path, overrides: dict) -> None:
    """Train 8 steps in one go and, with ``overrides`` too, stop after 3 and resume: steps 4-8 of
    the resumed run have the same losses and the run ends finished."""
    full = make_run(tmp_path / "a", **overrides)
    assert run_training(full, echo=False) == 0
    expected = losses_by_step(full)
    assert len(expected) == 8

    split = make_run(tmp_path / "b", **overrides)
    assert run_training(split, control=StopAfter(3), echo=False) == 0
    assert summarize_run(split).state == "stopped"
    assert load_checkpoint(checkpoint_path(split))["step"] == 3
    assert run_training(split, resume=True, echo=False) == 0
    resumed = losses_by_step(split)
    assert sorted(resumed) == sorted(expected)
    for step in range(4, 9):
        assert resumed[step] == pytest.approx(expected[step], abs=1e-5), step
    assert summarize_run(split).state == "finished"


@pytest.mark.parametrize("method", ["simclr", "moco"])
def test_resume_is_exact(tmp_path, method):
    check_resume_is_exact(tmp_path, {"method": {"name": method, "queue_size": 256, "temperature": 0.2}})


def test_quick_run_emits_contract_events(tmp_path):
    run = make_run(tmp_path)
    assert run_training(run, echo=False) == 0
    events = read_events(run / "events.jsonl")
    names = {e["name"] for e in events if e["kind"] == "metric"}
    assert {"loss", "lr", "throughput", "alignment", "uniformity", "embedding_std", "effective_rank",
            "backbone_embedding_std", "knn_top1", "epoch_time"} <= names
    for e in events:
        assert {"kind", "time"} <= set(e)
        if e["kind"] == "metric":  # a scalar value, or an eigenvalue list (spectrum events)
            assert {"step", "epoch", "name"} <= set(e) and ("value" in e or isinstance(e.get("values"), list))
    assert "spectrum" in names  # at step 1 (eval.spectrum_every_steps)
    assert (run / "metrics.h5").exists() and checkpoint_path(run).exists()
    knn = [e for e in events if e.get("name") == "knn_top1"][-1]
    assert knn["k"] == 10 and knn["features"] == "backbone"


def test_sigterm_checkpoints_and_exits_zero(tmp_path):
    run = make_run(tmp_path, schedule={"epochs": 200})
    proc = start_trainer("--run-dir", run)
    try:
        wait_for_event(run, lambda e: e.get("name") == "loss" and e["step"] >= 3)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert stdout_events(out)[-1]["state"] == "stopped"
    assert load_checkpoint(checkpoint_path(run))["step"] >= 3


def test_stdin_stop_and_eof_exit(tmp_path):
    run = make_run(tmp_path, schedule={"epochs": 200})
    proc = start_trainer("--run-dir", run, "--exit-on-stdin-eof", stdin=subprocess.PIPE)
    try:
        wait_for_event(run, lambda e: e.get("name") == "loss")
        proc.stdin.close()  # the GUI went away
        proc.wait(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0
    assert summarize_run(run).state == "stopped"


def test_checkpoint_requested_while_paused_is_written_before_resume(tmp_path):
    run = make_run(tmp_path, schedule={"epochs": 200})
    proc = start_trainer("--run-dir", run, stdin=subprocess.PIPE)
    try:
        wait_for_event(run, lambda e: e.get("name") == "loss")
        proc.stdin.write("pause\n")
        proc.stdin.flush()
        paused = wait_for_event(run, lambda e: e.get("state") == "paused")
        proc.stdin.write("checkpoint\n")
        proc.stdin.flush()
        # (an epoch-end checkpoint may carry the same millisecond as the pause: match the request's)
        saved = wait_for_event(run, lambda e: e.get("state") == "checkpoint" and "requested" in e.get("message", ""))
        paused_at = int(paused["message"].rsplit(" ", 1)[1])
        assert saved["step"] == paused_at  # written while paused: no step trained since
        proc.stdin.write("stop\n")
        proc.stdin.flush()
        proc.wait(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0
    assert max(losses_by_step(run)) == paused_at  # the stop came while still paused


def test_sigkill_keeps_events_and_checkpoint_then_resumes(tmp_path):
    run = make_run(tmp_path, schedule={"epochs": 6})
    proc = start_trainer("--run-dir", run)
    try:
        wait_for_event(run, lambda e: e.get("state") == "checkpoint")
        wait_for_event(run, lambda e: e.get("name") == "loss" and e["step"] >= 6)
        proc.kill()
        proc.wait(timeout=30)
    finally:
        proc.kill()
    lines = (run / "events.jsonl").read_text().splitlines()
    assert len(read_events(run / "events.jsonl")) >= len(lines) - 1
    saved_step = load_checkpoint(checkpoint_path(run))["step"]
    assert saved_step >= 4
    result = run_cli("train", "--run-dir", run, "--resume")
    assert result.returncode == 0, result.stderr
    assert summarize_run(run).state == "finished"
    steps = [e["step"] for e in read_events(run / "events.jsonl") if e.get("name") == "loss"]
    assert max(steps) == 24


def test_bad_config_field_exit_2(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[method]\nname = "simclr"\ntemperature = -1\n')
    result = run_cli("train", "--config", cfg, "--run-dir", tmp_path / "run")
    assert result.returncode == 2
    (event,) = [e for e in stdout_events(result.stdout) if e["kind"] == "error"]
    assert "method.temperature must be > 0" in event["message"]
    assert read_events(tmp_path / "run" / "events.jsonl")[-1]["kind"] == "error"


def test_unknown_method_exit_2(tmp_path):
    result = run_cli("train", "--preset", "quick", "--set", "method.name=moco_v9", "--run-dir", tmp_path / "r")
    assert result.returncode == 2
    assert "method.name must be one of" in stdout_events(result.stdout)[-1]["message"]


def test_missing_data_folder_exit_3(tmp_path):
    missing = tmp_path / "nowhere"
    result = run_cli("train", "--preset", "quick", "--set", f"data.source='imagefolder:{missing}'",
                     "--run-dir", tmp_path / "r")
    assert result.returncode == 3, result.stderr
    error = stdout_events(result.stdout)[-1]
    assert error["kind"] == "error" and str(missing) in error["message"]


def test_corrupt_jpeg_is_skipped_with_warning(tmp_path):
    from PIL import Image
    import numpy as np

    root = tmp_path / "images"
    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        for i in range(40):
            Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(root / cls / f"{i}.jpg")
    (root / "a" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    run = make_run(tmp_path, data={"source": f"imagefolder:{root}", "val_fraction": 0.25},
                   optim={"batch_size": 16}, schedule={"epochs": 1}, eval={"probe_batch_size": 16})
    assert run_training(run, echo=False) == 0
    warnings = [e for e in read_events(run / "events.jsonl") if e.get("level") == "warning"]
    assert any("broken.jpg" in e["message"] for e in warnings)


def test_metrics_h5_writer_appends_what_is_new_and_applies_the_resume_cut(tmp_path):
    """The writer's file always equals the rebuild from events.jsonl: first update rebuilds,
    later ones append (new series too); a ``resumed`` status at step k drops the points after k
    of the killed segment, whether it comes before the first update or between two appends."""
    import numpy as np

    from backend.events import EventWriter, metric_series
    from backend.runs import MetricsH5Writer, read_metrics_h5

    def check():
        writer.update()
        expected = metric_series(read_events(tmp_path / "events.jsonl"))
        got = read_metrics_h5(tmp_path / "metrics.h5")
        assert got.keys() == expected.keys()
        for name, cols in expected.items():
            for key, values in cols.items():
                np.testing.assert_array_equal(got[name][key], np.asarray(values), err_msg=f"{name}.{key}")
        return got

    events = EventWriter(tmp_path / "events.jsonl", echo=False)
    for step in range(1, 6):
        events.metric("loss", 1.0 / step, step, 0)
    events.status("resumed", step=3)            # a killed segment: steps 4 and 5 are redone
    for step in range(4, 8):
        events.metric("loss", 2.0 / step, step, 0)
    writer = MetricsH5Writer(tmp_path)
    assert check()["loss"]["step"].tolist() == list(range(1, 8))
    for step in range(8, 11):
        events.metric("loss", 2.0 / step, step, 0)
        events.metric("knn_top1", 0.1 * step, step, 1)  # a series the file does not have yet
    check()
    events.status("resumed", step=9)            # a cut between two appends
    events.metric("loss", 3.0, 10, 1)
    got = check()
    assert got["loss"]["step"].tolist() == list(range(1, 11)) and got["loss"]["value"][-1] == 3.0
    assert got["knn_top1"]["step"].tolist() == [8, 9]
    events.close()
