"""torchrun layouts (gloo, CPU): new runs from --config, two "nodes" on this machine (shared and
not shared filesystem), one writer, the same first-step loss as one process, resume on another layout."""

import json
import os
import shutil
import socket
import subprocess
import sys

import pytest

from backend.events import read_events
from backend.runs import summarize_run

from .trainer_helpers import ROOT, losses_by_step, run_cli, tiny_config

# Deterministic views (whole image, no flips or colour changes) and no batch norm (ViT backbone,
# a linear projector): the loss over the global batch is then the same on any rank layout.
EXACT = {"model": {"backbone": "vit_tiny", "projector_layers": 1},
         "augment": {"crop_scale": [1.0, 1.0], "crop_ratio": [1.0, 1.0], "hflip_prob": 0.0,
                     "jitter_prob": 0.0, "grayscale_prob": 0.0},
         "data": {"synthetic_train_size": 128, "synthetic_test_size": 64},
         "schedule": {"epochs": 1}, "eval": {"probe_batch_size": 32, "knn_k": 5},
         "runtime": {"device": "cpu"}}


def _env():
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")


def _config_file(tmp_path, **overrides):
    path = tmp_path / "exp.json"
    path.write_text(json.dumps(tiny_config(**{**EXACT, **overrides}).to_dict()))
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(*launcher, train_args, prefix=()):
    cmd = [*prefix, sys.executable, "-m", "torch.distributed.run", *launcher,
           "-m", "backend", "train", *map(str, train_args), "--no-stdin"]
    return subprocess.Popen(cmd, cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc, timeout=120):
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def _check_one_writer(run):
    events = read_events(run / "events.jsonl")
    assert sum(e.get("state") == "started" for e in events) == 1
    assert sum(e.get("state") == "finished" for e in events) == 1
    steps = [e["step"] for e in events if e.get("name") == "loss"]
    assert steps == sorted(set(steps)) and steps[0] == 1  # every step once, in order
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["last.pt", "last.pt.sha256"]


@pytest.fixture(scope="module")
def single_losses(tmp_path_factory):
    """Per-step losses of one process training the EXACT config (the reference of every layout)."""
    tmp = tmp_path_factory.mktemp("single")
    run = tmp / "single"
    result = run_cli("train", "--config", _config_file(tmp), "--run-dir", run, "--no-stdin")
    assert result.returncode == 0, result.stderr[-2000:]
    return losses_by_step(run)


def _resume_on_one_rank(run, first_losses):
    """One more epoch of ``run`` in a single process: it continues, every step logged once."""
    payload = json.loads((run / "config.json").read_text())
    payload["config"]["schedule"]["epochs"] = 2
    (run / "config.json").write_text(json.dumps(payload))
    resumed = run_cli("train", "--run-dir", run, "--resume", "--no-stdin")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    summary = summarize_run(run)
    assert summary.state == "finished", summary.message
    steps = [e["step"] for e in read_events(run / "events.jsonl") if e.get("name") == "loss"]
    assert steps == sorted(set(steps)) and max(steps) == 2 * max(first_losses)


def test_config_under_torchrun_two_ranks_one_node_then_resume_on_one(tmp_path):
    cfg_path = _config_file(tmp_path)
    run = tmp_path / "ws" / "dist"
    code, out, err = _finish(_torchrun("--standalone", "--nproc_per_node=2",
                                       train_args=["--config", cfg_path, "--run-dir", run]))
    assert code == 0, err[-3000:]
    assert "already holds a run" not in err
    _check_one_writer(run)
    assert json.loads((run / "config.json").read_text())["device"] == "cpu x 2 ranks"
    _resume_on_one_rank(run, losses_by_step(run))


def test_two_nodes_one_writer_and_the_single_process_first_loss(tmp_path, single_losses):
    cfg_path = _config_file(tmp_path)
    run = tmp_path / "ws" / "two_nodes"
    port = _free_port()
    nodes = [_torchrun("--nnodes=2", "--nproc_per_node=1", f"--node_rank={rank}", "--rdzv_backend=c10d",
                       f"--rdzv_endpoint=127.0.0.1:{port}", "--rdzv_id=two_nodes",
                       train_args=["--config", cfg_path, "--run-dir", run]) for rank in (0, 1)]
    results = [_finish(p) for p in nodes]
    for code, _, err in results:
        assert code == 0, err[-3000:]
    assert not any("no shared filesystem" in err for _, _, err in results)
    _check_one_writer(run)
    assert losses_by_step(run)[1] == pytest.approx(single_losses[1], rel=1e-4, abs=1e-5)


def _can_unshare() -> bool:
    if shutil.which("unshare") is None or os.geteuid() != 0:
        return False
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=1m tmpfs /mnt && umount /mnt"],
                           capture_output=True, timeout=10)
    return probe.returncode == 0


@pytest.mark.skipif(not _can_unshare(), reason="needs root and unshare -m to hide the run from one 'node'")
def test_second_node_without_shared_filesystem_writes_nothing_and_says_so(tmp_path, single_losses):
    cfg_path = _config_file(tmp_path)
    ws = tmp_path / "ws"
    ws.mkdir()
    run = ws / "private"
    port = _free_port()
    launcher = ["--nnodes=2", "--nproc_per_node=1", "--master_addr=127.0.0.1", f"--master_port={port}"]
    node0 = _torchrun(*launcher, "--node_rank=0", train_args=["--config", cfg_path, "--run-dir", run])
    # Node 1 sees its own empty tmpfs where the workspace is: no shared filesystem.
    hide = ["unshare", "-m", "sh", "-c", f'mount -t tmpfs -o size=8m tmpfs "{ws}" && exec "$0" "$@"']
    node1 = _torchrun(*launcher, "--node_rank=1", train_args=["--config", cfg_path, "--run-dir", run], prefix=hide)
    (code0, _, err0), (code1, _, err1) = _finish(node0), _finish(node1)
    assert code0 == 0 and code1 == 0, (err0[-2000:], err1[-2000:])
    notes = [line for line in err1.splitlines() if "no shared filesystem" in line]
    assert len(notes) == 1 and "write nothing" in notes[0]
    _check_one_writer(run)
    assert losses_by_step(run)[1] == pytest.approx(single_losses[1], rel=1e-4, abs=1e-5)
