"""A persistent run queue in ``<workspace>/queue.json`` and a headless runner that drains it.

Each entry: ``run_dir`` (absolute), ``device`` (requested: auto, cpu, cuda or cuda:N), ``state``
(queued | started | done | failed), ``created`` / ``started`` / ``finished`` (epoch seconds),
``pid`` and ``exit_code`` once started / finished, ``assigned`` (the device it was started on).
Every change re-reads the file under an exclusive ``flock`` on ``queue.lock`` and writes it back
atomically (temp file + ``os.replace``), so the GUI and a ``sslwb sweep`` in another process never
lose each other's entries, and the queue survives restarts.

Scheduling (:meth:`RunQueue.next_startable`): one run per GPU, a chosen number on the CPU; the
oldest queued entry whose requested device is free starts first (``auto`` means a GPU when the
machine has one, else the CPU; ``cuda`` any free GPU).
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from .errors import ConfigError

QUEUE_FILE = "queue.json"
QUEUE_LOCK = "queue.lock"
STATES = ("queued", "started", "done", "failed")


@dataclass
class QueueEntry:
    """One queued run."""

    run_dir: str
    device: str = "auto"
    state: str = "queued"
    created: float = 0.0
    started: float | None = None
    finished: float | None = None
    pid: int | None = None
    exit_code: int | None = None
    assigned: str | None = None


class RunQueue:
    """The queue of one workspace; every method reads the file afresh (no stale state kept)."""

    def __init__(self, workspace):
        self.workspace = Path(workspace)
        self.path = self.workspace / QUEUE_FILE

    @contextmanager
    def _locked(self):
        self.workspace.mkdir(parents=True, exist_ok=True)
        with open(self.workspace / QUEUE_LOCK, "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _read(self) -> list[QueueEntry]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return []
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{self.path} is not a readable run queue: {exc}") from None
        return [QueueEntry(**e) for e in data.get("entries", [])]

    def _write(self, entries: list[QueueEntry]) -> None:
        tmp = self.path.with_name(f".{QUEUE_FILE}.{os.getpid()}.{secrets.token_hex(3)}.tmp")
        tmp.write_text(json.dumps({"version": 1, "entries": [asdict(e) for e in entries]}, indent=2) + "\n")
        os.replace(tmp, self.path)

    def entries(self) -> list[QueueEntry]:
        """Every entry, oldest first."""
        with self._locked():
            return self._read()

    def get(self, run_dir) -> QueueEntry | None:
        """The entry of ``run_dir``, or None."""
        key = str(Path(run_dir).resolve())
        return next((e for e in self.entries() if e.run_dir == key), None)

    def enqueue(self, run_dirs, device: str = "auto") -> list[QueueEntry]:
        """Queue runs (a run already queued or started stays as it is; a done/failed one is queued again)."""
        now = round(time.time(), 3)
        with self._locked():
            entries = self._read()
            by_dir = {e.run_dir: e for e in entries}
            for run_dir in run_dirs:
                key = str(Path(run_dir).resolve())
                old = by_dir.get(key)
                if old is None:
                    entries.append(QueueEntry(run_dir=key, device=device, created=now))
                elif old.state in ("done", "failed"):
                    entries.remove(old)
                    entries.append(QueueEntry(run_dir=key, device=device, created=now))
            self._write(entries)
            return entries

    def _update(self, run_dir, **fields) -> QueueEntry:
        key = str(Path(run_dir).resolve())
        with self._locked():
            entries = self._read()
            for entry in entries:
                if entry.run_dir == key:
                    for name, value in fields.items():
                        setattr(entry, name, value)
                    self._write(entries)
                    return entry
        raise ConfigError(f"run {run_dir} is not in the queue {self.path}")

    def mark_started(self, run_dir, pid: int | None = None, device: str | None = None) -> QueueEntry:
        """The run's trainer started (process ``pid`` on ``device``)."""
        return self._update(run_dir, state="started", started=round(time.time(), 3), pid=pid, assigned=device)

    def mark_done(self, run_dir, exit_code: int = 0) -> QueueEntry:
        """The run's trainer ended: state done (exit code 0) or failed."""
        return self._update(run_dir, state="done" if exit_code == 0 else "failed",
                            finished=round(time.time(), 3), exit_code=int(exit_code))

    def move(self, run_dir, offset: int) -> int:
        """Move a queued run ``offset`` places among the queued entries (negative: sooner; the
        oldest queued entry starts first; done and started entries keep their places). Returns its
        new position among the queued entries."""
        key = str(Path(run_dir).resolve())
        with self._locked():
            entries = self._read()
            slots = [i for i, e in enumerate(entries) if e.state == "queued"]
            queued = [entries[i] for i in slots]
            at = next((n for n, e in enumerate(queued) if e.run_dir == key), None)
            if at is None:
                raise ConfigError(f"run {run_dir} is not queued in {self.path} (only queued runs move)")
            new = max(0, min(len(queued) - 1, at + int(offset)))
            queued.insert(new, queued.pop(at))
            for i, entry in zip(slots, queued):
                entries[i] = entry
            self._write(entries)
            return new

    def free_slots(self, slots: list[str]) -> list[str]:
        """``slots`` (see :func:`device_slots`) less the devices that started entries hold."""
        return _free(slots, self.busy_devices())

    def remove(self, run_dir, missing_ok: bool = False) -> None:
        """Drop a run from the queue (a started one too: its trainer is not stopped)."""
        key = str(Path(run_dir).resolve())
        with self._locked():
            entries = self._read()
            kept = [e for e in entries if e.run_dir != key]
            if len(kept) == len(entries):
                if missing_ok:
                    return
                raise ConfigError(f"run {run_dir} is not in the queue {self.path}")
            self._write(kept)

    def reconcile(self, own_pids=()) -> list[QueueEntry]:
        """Settle started entries whose trainer is gone (a runner that crashed or was closed): a
        run whose writer lock is free and whose process (not in ``own_pids``) is dead becomes done
        when its events say finished, else queued again (it resumes from its last checkpoint).
        Returns the entries changed."""
        from .run_lock import lock_holder
        from .runs import summarize_run

        changed = []
        with self._locked():
            entries = self._read()
            for e in entries:
                if e.state != "started" or e.pid in own_pids or _alive(e.pid) or lock_holder(e.run_dir):
                    continue
                if Path(e.run_dir).is_dir() and summarize_run(e.run_dir).state == "finished":
                    e.state, e.finished, e.exit_code = "done", round(time.time(), 3), 0
                else:
                    e.state, e.pid, e.started, e.assigned = "queued", None, None, None
                changed.append(e)
            if changed:
                self._write(entries)
        return changed

    def busy_devices(self) -> list[str]:
        """Devices taken by started entries (one item per running run)."""
        return [e.assigned or e.device for e in self.entries() if e.state == "started"]

    def next_startable(self, free_devices, gpus_present: bool | None = None):
        """(entry, device) of the oldest queued entry that can start on one of ``free_devices``
        (a list with one item per free slot: "cuda:0", "cuda:1", "cpu", "cpu", ...), or None.
        ``auto`` takes a free GPU when the machine has GPUs (``gpus_present``, default: any
        "cuda" in ``free_devices``), else a CPU slot."""
        free = list(free_devices)
        if gpus_present is None:
            gpus_present = any(d.startswith("cuda") for d in free)
        for entry in self.entries():
            if entry.state != "queued":
                continue
            want = entry.device
            if want == "auto":
                want = "cuda" if gpus_present else "cpu"
            for device in free:
                if device == want or (want == "cuda" and device.startswith("cuda:")):
                    return entry, device
        return None


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def device_slots(max_cpu_runs: int = 1, gpus: list[str] | None = None) -> list[str]:
    """All slots of this machine: one per GPU (default: every visible CUDA device), ``max_cpu_runs`` CPU."""
    if max_cpu_runs < 0:
        raise ConfigError(f"max_cpu_runs must be >= 0, got {max_cpu_runs}")
    if gpus is None:
        from .devices import available_devices
        gpus = [d for d in available_devices() if d != "cpu"]
    return list(gpus) + ["cpu"] * max_cpu_runs


def _free(slots: list[str], busy: list[str]) -> list[str]:
    free = list(slots)
    for device in busy:
        if device in free:
            free.remove(device)
    return free


def assign_device(run_dir, device: str) -> None:
    """Write the device the queue gave the run into its config (the trainer reads it from there)."""
    from .runs import read_run_config, write_run_config
    cfg = read_run_config(run_dir)
    if cfg.runtime.device != device:
        cfg.runtime.device = device
        write_run_config(run_dir, cfg)


def run_queue(workspace, max_cpu_runs: int = 1, *, only=None, gpus: list[str] | None = None,
              poll_s: float = 0.2, on_change=None) -> dict[str, int]:
    """Start queued runs as trainer subprocesses (``python -m backend train --run-dir D``) as slots
    free up, until nothing queued can start and nothing runs; returns {run_dir: exit_code}.
    Slots taken by runs another runner (the GUI, another ``sslwb sweep``) started count as busy;
    entries orphaned by a crashed runner are settled first (:meth:`RunQueue.reconcile`).
    ``only``: just these run dirs (e.g. one sweep's); ``on_change(run_dir, state)`` is told of each
    start and end. A trainer's stderr goes to ``<run>/trainer-stderr.log``."""
    queue, slots = RunQueue(workspace), device_slots(max_cpu_runs, gpus)
    keep = None if only is None else {str(Path(d).resolve()) for d in only}
    running: dict[str, tuple[subprocess.Popen, str]] = {}
    results: dict[str, int] = {}
    gpus_present = any(s.startswith("cuda") for s in slots)
    while True:
        for key, (proc, _) in list(running.items()):
            if proc.poll() is not None:
                del running[key]
                results[key] = proc.returncode
                queue.mark_done(key, proc.returncode)
                if on_change:
                    on_change(key, "done" if proc.returncode == 0 else "failed")
        queue.reconcile(own_pids={proc.pid for proc, _ in running.values()})
        pick = _next_for(queue, _free(slots, queue.busy_devices()), gpus_present, keep)
        if pick is not None:
            entry, device = pick
            running[entry.run_dir] = (_start(queue, entry, device), device)
            if on_change:
                on_change(entry.run_dir, "started")
            continue
        if not running and not _waiting_on_others(queue, keep):
            return results
        time.sleep(poll_s)


def _waiting_on_others(queue: RunQueue, keep) -> bool:
    """Whether runs of ours are queued while another runner's runs hold slots (they will free up)."""
    entries = queue.entries()
    ours_queued = any(e.state == "queued" and (keep is None or e.run_dir in keep) for e in entries)
    return ours_queued and any(e.state == "started" for e in entries)


def _next_for(queue: RunQueue, free, gpus_present, keep):
    if keep is None:
        return queue.next_startable(free, gpus_present)
    # restrict to ``keep``: the first startable entry among them (others are left queued)
    view = _FilteredQueue(queue, keep)
    return view.next_startable(free, gpus_present)


class _FilteredQueue(RunQueue):
    def __init__(self, queue: RunQueue, keep: set):
        super().__init__(queue.workspace)
        self._keep = keep

    def entries(self) -> list[QueueEntry]:
        return [e for e in super().entries() if e.run_dir in self._keep]


def _start(queue: RunQueue, entry: QueueEntry, device: str) -> subprocess.Popen:
    run_dir = Path(entry.run_dir)
    try:
        assign_device(run_dir, device)
    except ConfigError:
        pass  # the trainer reports the bad config itself (error event, exit code 2)
    cmd = [sys.executable, "-m", "backend", "train", "--run-dir", str(run_dir), "--resume", "--no-stdin"]
    if not (run_dir / "checkpoints" / "last.pt").exists():
        cmd.remove("--resume")
    with open(run_dir / "trainer-stderr.log", "ab") as err:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                                cwd=str(Path(__file__).resolve().parent.parent))
    queue.mark_started(run_dir, proc.pid, device)
    return proc
