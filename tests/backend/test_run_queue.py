"""The persistent run queue: survives a reload, device slots, started/done states."""

import subprocess
import sys

import pytest

from backend.errors import ConfigError
from backend.run_queue import RunQueue, device_slots
from tests.backend.trainer_helpers import make_run


def test_queue_survives_a_reload_and_tracks_states(tmp_path):
    a, b = make_run(tmp_path, name="a"), make_run(tmp_path, name="b")
    RunQueue(tmp_path / "ws").enqueue([a, b], device="cpu")
    q = RunQueue(tmp_path / "ws")  # a fresh object reads the file
    assert [(e.run_dir, e.state, e.device) for e in q.entries()] == [(str(a.resolve()), "queued", "cpu"),
                                                                      (str(b.resolve()), "queued", "cpu")]
    q.mark_started(a, pid=123, device="cpu")
    q.mark_done(a, 0)
    q.mark_started(b, pid=124, device="cpu")
    q.mark_done(b, 3)
    again = RunQueue(tmp_path / "ws")
    assert [(e.state, e.exit_code) for e in again.entries()] == [("done", 0), ("failed", 3)]
    again.enqueue([b])  # a failed run can be queued again
    assert again.get(b).state == "queued"
    again.remove(a)
    assert again.get(a) is None
    with pytest.raises(ConfigError, match="not in the queue"):
        again.mark_done(a)


def test_next_startable_one_per_gpu_and_n_on_cpu(tmp_path):
    runs = [make_run(tmp_path, name=str(i)) for i in range(4)]
    q = RunQueue(tmp_path / "ws")
    q.enqueue(runs[:2], device="cuda")
    q.enqueue(runs[2:3], device="cpu")
    q.enqueue(runs[3:], device="auto")
    entry, device = q.next_startable(["cuda:1", "cpu"])
    assert (entry.run_dir, device) == (str(runs[0].resolve()), "cuda:1")
    q.mark_started(runs[0], 1, device)
    q.mark_started(runs[1], 2, "cuda:0")
    entry, device = q.next_startable(["cpu"], gpus_present=True)  # GPUs busy: the cpu entry goes
    assert (entry.run_dir, device) == (str(runs[2].resolve()), "cpu")
    q.mark_started(runs[2], 3, "cpu")
    assert q.next_startable(["cpu"], gpus_present=True) is None  # auto waits for a GPU
    assert q.next_startable(["cpu"], gpus_present=False)[0].run_dir == str(runs[3].resolve())
    assert sorted(q.busy_devices()) == ["cpu", "cuda:0", "cuda:1"]
    assert device_slots(2, gpus=["cuda:0"]) == ["cuda:0", "cpu", "cpu"]


def test_concurrent_writers_lose_nothing(tmp_path):
    runs = [make_run(tmp_path, name=str(i)) for i in range(6)]
    code = ("import sys; from backend.run_queue import RunQueue; "
            "[RunQueue(sys.argv[1]).enqueue([d]) for d in sys.argv[2:]]")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "ws"), *map(str, runs[i::2])])
             for i in range(2)]
    assert [p.wait(60) for p in procs] == [0, 0]
    assert sorted(e.run_dir for e in RunQueue(tmp_path / "ws").entries()) == sorted(str(r.resolve()) for r in runs)


def test_reconcile_requeues_runs_of_a_dead_runner(tmp_path):
    a, b = make_run(tmp_path, name="a"), make_run(tmp_path, name="b")
    q = RunQueue(tmp_path / "ws")
    q.enqueue([a, b], device="cpu")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    q.mark_started(a, pid=dead.pid, device="cpu")   # its runner crashed, the trainer is gone
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        q.mark_started(b, pid=live.pid, device="cpu")
        changed = RunQueue(tmp_path / "ws").reconcile()
        assert [e.run_dir for e in changed] == [str(a.resolve())]
        assert [e.state for e in q.entries()] == ["queued", "started"]
        assert q.busy_devices() == ["cpu"] and q.next_startable(["cpu"]) is not None
    finally:
        live.kill()
        live.wait()
