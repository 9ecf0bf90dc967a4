"""One writer per run directory: exclusive, stale locks taken over once, live/remote ones never."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from backend import run_lock
from backend.errors import WorkbenchError
from backend.run_lock import LockInfo, RunLock, RunLockedError, acquire_run_lock, lock_holder, lock_path


def dead_pid() -> int:
    """A PID that was just in use and is now reaped."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def write_lock(run_dir, **fields):
    data = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(), "command": "sslwb train",
            "token": "t0", "boot_id": run_lock._boot_id(), "proc_start": 0, **fields}
    lock_path(run_dir).write_text(json.dumps(data))


def _contender(run_dir, go, done, results):
    go.wait()
    try:
        lock = RunLock(run_dir, "sslwb train").acquire()
        results.put(("won", os.getpid(), ""))
        done.wait(30)
        lock.release()
    except RunLockedError as exc:
        results.put(("refused", os.getpid(), str(exc)))


def race(run_dir, n=4):
    ctx = mp.get_context("fork")
    go, done, results = ctx.Event(), ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_contender, args=(run_dir, go, done, results)) for _ in range(n)]
    for p in procs:
        p.start()
    go.set()
    outcomes = [results.get(timeout=30) for _ in procs]
    done.set()
    for p in procs:
        p.join(30)
    return outcomes


def test_exactly_one_of_simultaneous_writers_acquires(tmp_path):
    outcomes = race(tmp_path)
    winners = [pid for kind, pid, _ in outcomes if kind == "won"]
    assert len(winners) == 1
    for kind, _, message in outcomes:
        if kind == "refused":
            assert f"is in use by PID {winners[0]} on host {socket.gethostname()} since" in message
            assert message.endswith("(sslwb train)")
    assert not lock_path(tmp_path).exists()  # the winner released it


def test_exactly_one_of_simultaneous_takers_of_a_stale_lock_wins(tmp_path):
    write_lock(tmp_path, pid=dead_pid(), token="stale")
    outcomes = race(tmp_path, n=4)
    assert sum(kind == "won" for kind, _, _ in outcomes) == 1
    assert not any(name.endswith(".break") for name in os.listdir(tmp_path))


def test_refusal_names_the_holder_and_touches_nothing(tmp_path):
    (tmp_path / "events.jsonl").write_text("x\n")
    with RunLock(tmp_path, "sslwb train") as held:
        before = sorted(os.listdir(tmp_path))
        with pytest.raises(RunLockedError) as err:
            RunLock(tmp_path, "sslwb evaluate").acquire()
        assert sorted(os.listdir(tmp_path)) == before
        when = time.strftime("%H:%M", time.localtime(held.info.started))
        assert str(err.value) == (f"run {tmp_path.name} is in use by PID {os.getpid()} on host "
                                  f"{socket.gethostname()} since {when} (sslwb train)")
        assert err.value.holder == held.info
        assert lock_holder(tmp_path) == held.info
    assert not lock_path(tmp_path).exists() and lock_holder(tmp_path) is None


def test_stale_lock_of_a_dead_pid_is_taken_over(tmp_path):
    write_lock(tmp_path, pid=dead_pid(), token="stale")
    assert lock_holder(tmp_path) is None  # the GUI shows it as free
    with RunLock(tmp_path, "sslwb train") as lock:
        assert lock.held and lock_holder(tmp_path).token == lock.info.token != "stale"


def test_reused_pid_and_reboot_count_as_stale(tmp_path):
    if not run_lock._proc_start(os.getpid()):
        pytest.skip("no /proc start times here")
    write_lock(tmp_path, pid=os.getpid(), proc_start=run_lock._proc_start(os.getpid()) + 1)
    assert lock_holder(tmp_path) is None
    write_lock(tmp_path, pid=os.getpid(), boot_id="another-boot")
    assert lock_holder(tmp_path) is None
    write_lock(tmp_path, pid=os.getpid(), proc_start=run_lock._proc_start(os.getpid()))
    assert lock_holder(tmp_path).pid == os.getpid()


@pytest.mark.parametrize("pid", ["dead", "live"])
def test_holder_on_another_host_is_never_taken_over(tmp_path, pid):
    write_lock(tmp_path, host="gpu-node-7", pid=dead_pid() if pid == "dead" else os.getpid())
    with pytest.raises(RunLockedError, match="on host gpu-node-7 since .* \\(sslwb train\\)"):
        RunLock(tmp_path).acquire()
    assert json.loads(lock_path(tmp_path).read_text())["token"] == "t0"
    assert lock_holder(tmp_path).host == "gpu-node-7"


def test_live_holder_on_this_host_is_not_taken_over(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        write_lock(tmp_path, pid=sleeper.pid, proc_start=run_lock._proc_start(sleeper.pid))
        with pytest.raises(RunLockedError, match=f"PID {sleeper.pid}"):
            RunLock(tmp_path).acquire()
    finally:
        sleeper.kill()
        sleeper.wait()
    assert RunLock(tmp_path).acquire().held  # reaped now: stale


HOLD = """
import sys, time
from backend.run_lock import RunLock
lock = RunLock(sys.argv[1], "sslwb train").acquire()
print("held", flush=True)
if sys.argv[2] == "sleep":
    time.sleep(60)
"""


def test_released_at_exit_and_left_by_a_kill(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run([sys.executable, "-c", HOLD, str(tmp_path), "exit"], env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.stdout.strip() == "held" and not lock_path(tmp_path).exists()  # atexit released it
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path), "sleep"], env=env,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    assert lock_holder(tmp_path).pid == proc.pid
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    assert lock_path(tmp_path).exists() and lock_holder(tmp_path) is None
    with RunLock(tmp_path) as lock:
        assert lock.held


def test_release_is_idempotent_and_spares_a_lock_not_ours(tmp_path):
    lock = RunLock(tmp_path).acquire()
    lock.release()
    lock.release()
    assert not lock_path(tmp_path).exists()
    other = RunLock(tmp_path).acquire()
    lock.info = LockInfo(pid=1, host="h", started=0.0, command="", token="not-ours")
    lock.release()  # a handle whose lock was replaced does not delete the new holder's file
    assert lock_holder(tmp_path) == other.info
    other.release()


def test_torchrun_ranks_share_rank_zeros_lock(tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    follower = acquire_run_lock(tmp_path, "sslwb train")
    assert follower.shared and not follower.held and not lock_path(tmp_path).exists()
    leader = acquire_run_lock(tmp_path, "sslwb train", rank=0)
    assert leader.held and acquire_run_lock(tmp_path, rank=2).shared  # ranks > 0 never contend
    follower.release()
    assert lock_path(tmp_path).exists()
    leader.release()


def test_unreadable_lock_and_missing_run_are_clear_errors(tmp_path):
    lock_path(tmp_path).write_text("{not json")
    with pytest.raises(RunLockedError, match="unreadable lock file"):
        RunLock(tmp_path).acquire()
    assert lock_holder(tmp_path).command == "unreadable lock file"
    with pytest.raises(RunLockedError, match="does not exist"):
        RunLock(tmp_path / "nope").acquire()


def test_unwritable_run_is_a_clear_error(tmp_path, monkeypatch):
    import errno

    def read_only(*args):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(run_lock.os, "link", read_only)
    with pytest.raises(WorkbenchError, match="cannot write its lock file .*: Read-only file system"):
        RunLock(tmp_path).acquire()
    assert os.listdir(tmp_path) == []  # the temp file is gone too
