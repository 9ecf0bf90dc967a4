"""One writer per run: a second trainer on a run in use is refused (exit 4) touching nothing; a
stale lock is taken over; ``sslwb launch --slurm`` creates the run and writes its sbatch script."""

import json
import os
import subprocess
import sys

from backend.events import read_events
from backend.run_lock import RunLockedError, lock_holder, lock_path

from .trainer_helpers import ROOT, make_run, run_cli, run_cli_in_process, wait_for_event


def _lock_file(run, pid):
    lock_path(run).write_text(json.dumps({"pid": pid, "host": os.uname().nodename, "started": 1.0,
                                          "command": "sslwb train", "token": "old", "boot_id": "",
                                          "proc_start": 0}))


def test_second_trainer_on_a_run_in_use_is_refused_and_touches_nothing(tmp_path):
    run = make_run(tmp_path, schedule={"epochs": 3})
    env = dict(os.environ, PYTHONUNBUFFERED="1", SSLWB_FAULT="sleep:4@step=2")  # the pause lands before the end
    first = subprocess.Popen([sys.executable, "-m", "backend", "train", "--run-dir", str(run)], cwd=ROOT, env=env,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_event(run, lambda e: e.get("state") == "running")
        first.stdin.write("pause\n")  # paused, it holds the run however slowly the second one starts
        first.stdin.flush()
        wait_for_event(run, lambda e: e.get("state") == "paused")
        assert lock_holder(run).pid == first.pid
        before = (run / "events.jsonl").read_bytes()
        second = run_cli("train", "--run-dir", run, "--no-stdin", timeout=60)
        assert second.returncode == RunLockedError.exit_code == 4
        assert f"is in use by PID {first.pid} on host" in second.stderr and "(sslwb train)" in second.stderr
        again = run_cli("train", "--run-dir", run, "--resume", "--no-stdin", timeout=60)
        assert again.returncode == 4
        assert (run / "events.jsonl").read_bytes()[:len(before)] == before
        first.stdin.write("stop\n")
        first.stdin.flush()
        _, err = first.communicate(timeout=120)
    finally:
        first.kill()
    assert first.returncode == 0, err[-2000:]
    events = read_events(run / "events.jsonl")
    assert sum(e.get("state") == "started" for e in events) == 1
    assert not any(e["kind"] == "error" for e in events)
    steps = [e["step"] for e in events if e.get("name") == "loss"]
    assert steps == sorted(set(steps))
    assert not lock_path(run).exists()  # released at exit


def test_stale_lock_of_a_dead_trainer_is_taken_over(tmp_path):
    run = make_run(tmp_path, schedule={"epochs": 1})
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    _lock_file(run, dead.pid)
    result = run_cli("train", "--run-dir", run, "--no-stdin")
    assert result.returncode == 0, result.stderr[-2000:]
    assert read_events(run / "events.jsonl")[-1].get("state") == "finished"
    assert not lock_path(run).exists()


def test_launch_slurm_creates_the_run_and_writes_a_ready_script(tmp_path, capsys):
    run = tmp_path / "runs" / "multi"
    result = run_cli_in_process(capsys, "launch", "--slurm", "--nodes", "2", "--gpus-per-node", "4",
                                "--preset", "quick", "--set", "optim.lr=0.1", "--run-dir", run,
                                "--time", "02:00:00", "--partition", "gpu", "--job-name", "exp1")
    assert result.returncode == 0, result.stderr
    script = run / "slurm.sbatch"
    assert result.stdout.splitlines() == [f"wrote {script} (2 node(s) x 4 GPU(s))", f"submit it with: sbatch {script}"]
    config = json.loads((run / "config.json").read_text())["config"]
    assert config["optim"]["lr"] == 0.1 and config["name"] == "quick"
    text = script.read_text()
    for line in ("#SBATCH --nodes=2", "#SBATCH --gpus-per-node=4", "#SBATCH --time=02:00:00",
                 "#SBATCH --partition=gpu", "#SBATCH --job-name=exp1", f"RUN_DIR={run}", "--nproc_per_node 4"):
        assert line in text
    assert os.access(script, os.X_OK) and not lock_path(run).exists()
    out = tmp_path / "job.sh"
    rerun = run_cli_in_process(capsys, "launch", "--slurm", "--run-dir", run, "--out", out)  # the existing run
    assert rerun.returncode == 0 and out.is_file(), rerun.stderr
    again = run_cli_in_process(capsys, "launch", "--slurm", "--preset", "quick", "--run-dir", run)
    assert again.returncode == 2 and "already holds a run" in again.stderr
    bad = run_cli_in_process(capsys, "launch", "--slurm", "--nodes", "0", "--preset", "quick",
                             "--run-dir", tmp_path / "none")
    assert bad.returncode == 2 and "nodes must be a positive integer" in bad.stderr
    assert not (tmp_path / "none").exists()
    no_launcher = run_cli_in_process(capsys, "launch", "--preset", "quick", "--run-dir", tmp_path / "none")
    assert no_launcher.returncode == 2 and "--slurm" in no_launcher.stderr
