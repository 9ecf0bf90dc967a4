"""One writer per run directory: a lock file ``<run>/writer.lock`` held by the process writing it.

The file is JSON: ``pid``, ``host``, ``started`` (epoch seconds), ``command`` (e.g. "sslwb
train"), ``token`` (random, identifies this holding), ``boot_id`` and ``proc_start`` (Linux: the
boot and the holder's start tick, to tell a PID reused after a crash or a reboot from the holder).

Acquiring: the full record is written to a private temp file, then hard-linked to the lock name.
``link`` is atomic and refuses an existing target on local disks *and* on NFS (where O_EXCL was
not atomic before NFSv3 and ``flock``/``fcntl`` locks depend on a lock daemon, may be emulated
locally, or silently not shared between clients); the lock appears with its content complete, so a
reader never sees an empty lock; and it survives the writer, so a crash leaves evidence of who
held the run. Where hard links are not supported (some FUSE/SMB mounts) it falls back to
``O_CREAT | O_EXCL``. A lost NFS reply to a successful link is caught by checking the temp file's
link count (2 = ours).

A lock left by a dead process is taken over only when its holder is on *this* host and is
provably gone (no such PID, or the PID now belongs to a younger process, or the machine rebooted
since): a live process, or any holder on another host (we cannot see its processes), is never
taken over. Two takers cannot both win: breaking needs a short-lived guard ``writer.lock.break``
(itself created atomically); under it the taker re-reads the lock and removes it only if it still
holds the stale token it judged, then links its own as usual, so a normal acquirer racing with the
taker also loses or wins cleanly.

torchrun: only rank 0 takes the lock (:func:`acquire_run_lock` with ``rank`` from the argument or
``$RANK``); the other ranks get a *shared* handle that holds nothing and releases nothing, since
rank 0 is the run's one writer (the other ranks use ``NullEventWriter``). If rank 0 is refused it
exits with the error and torchrun tears the other ranks down.
"""

from __future__ import annotations

import atexit
import errno
import json
import os
import secrets
import socket
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from .errors import WorkbenchError

LOCK_FILE = "writer.lock"
BREAK_SUFFIX = ".break"
BREAK_GUARD_TIMEOUT_S = 30.0   # a takeover guard older than this was left by a crashed taker


class RunLockedError(WorkbenchError):
    """Another process writes this run; ``holder`` is its :class:`LockInfo` (None if unreadable).
    A trainer refused for this reason exits with code 4 ("run in use"), touching nothing."""

    exit_code = 4

    def __init__(self, message: str, holder: "LockInfo | None" = None):
        super().__init__(message)
        self.holder = holder


@dataclass(frozen=True)
class LockInfo:
    """Who holds a run: read from its lock file."""

    pid: int
    host: str
    started: float
    command: str
    token: str
    boot_id: str = ""
    proc_start: int = 0

    def describe(self) -> str:
        """"PID 123 on host H since 10:41 (sslwb train)" (the date too when not today)."""
        when = time.localtime(self.started)
        fmt = "%H:%M" if time.strftime("%Y-%m-%d", when) == time.strftime("%Y-%m-%d") else "%Y-%m-%d %H:%M"
        text = f"PID {self.pid} on host {self.host} since {time.strftime(fmt, when)}"
        return text + (f" ({self.command})" if self.command else "")


def lock_path(run_dir) -> Path:
    """The lock file of a run directory."""
    return Path(run_dir) / LOCK_FILE


def _read_first(path: str, default: str = "") -> str:
    try:
        with open(path, encoding="ascii", errors="replace") as fh:
            return fh.read()
    except OSError:
        return default


def _boot_id() -> str:
    return _read_first("/proc/sys/kernel/random/boot_id").strip()


def _proc_start(pid: int) -> int:
    """Start time of a process in clock ticks since boot (Linux), 0 when unknown."""
    stat = _read_first(f"/proc/{pid}/stat")
    try:
        return int(stat[stat.rindex(")") + 2:].split()[19])  # field 22; the name may hold spaces
    except (ValueError, IndexError):
        return 0


def _read_info(path: Path) -> LockInfo | None:
    """The record in a lock file; None when it does not exist; raises ValueError when unreadable."""
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    data = json.loads(raw)
    return LockInfo(pid=int(data["pid"]), host=str(data["host"]), started=float(data["started"]),
                    command=str(data.get("command", "")), token=str(data["token"]),
                    boot_id=str(data.get("boot_id", "")), proc_start=int(data.get("proc_start", 0)))


def lock_holder(run_dir) -> LockInfo | None:
    """Who holds the run now (for "in use by ..."), or None when it is free. A lock whose holder is
    provably dead counts as free; an unreadable lock file is reported as held by PID 0."""
    path = lock_path(run_dir)
    try:
        info = _read_info(path)
    except (OSError, ValueError, KeyError, TypeError):
        return LockInfo(pid=0, host="?", started=_mtime(path), command="unreadable lock file", token="")
    if info is None or is_stale(info):
        return None
    return info


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return time.time()


def is_stale(info: LockInfo) -> bool:
    """Whether the holder is provably gone: same host, and its PID is dead, reused by a younger
    process, or the machine has rebooted since. A holder on another host is never stale."""
    if info.host != socket.gethostname():
        return False
    if info.boot_id and _boot_id() and info.boot_id != _boot_id():
        return True
    if info.pid <= 0:
        return False
    try:
        os.kill(info.pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # alive, another user's
    if info.proc_start and _proc_start(info.pid) and _proc_start(info.pid) != info.proc_start:
        return True
    return False


def _create_exclusive(target: Path, payload: str) -> bool:
    """Create ``target`` holding ``payload`` atomically; False when it exists."""
    tmp = target.with_name(f".{target.name}.{socket.gethostname()}.{os.getpid()}.{secrets.token_hex(4)}")
    tmp.write_text(payload, encoding="utf-8")
    try:
        try:
            os.link(tmp, target)
            return True
        except FileExistsError:
            return os.stat(tmp).st_nlink == 2  # NFS: the link succeeded, its reply was lost
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS, errno.EXDEV):
                raise
        try:  # no hard links on this filesystem
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        return True
    finally:
        tmp.unlink(missing_ok=True)


class RunLock:
    """The writer lock of one run directory; a context manager, also released at interpreter exit.

    ``RunLock(run_dir, command="sslwb train").acquire()`` raises :class:`RunLockedError` naming the
    holder when another live process writes the run. ``shared=True`` (torchrun ranks > 0) makes a
    handle that acquires and releases nothing."""

    def __init__(self, run_dir, command: str = "", *, shared: bool = False):
        self.run_dir = Path(run_dir)
        self.path = lock_path(run_dir)
        self.command = command
        self.shared = shared
        self.info: LockInfo | None = None

    @property
    def held(self) -> bool:
        """Whether this handle holds the lock file."""
        return self.info is not None

    def acquire(self) -> "RunLock":
        """Take the lock (taking over a provably stale one), or raise RunLockedError. Touches
        nothing else in the run directory."""
        if self.shared or self.held:
            return self
        if not self.run_dir.is_dir():
            raise RunLockedError(f"run {self.run_dir} does not exist or is not a directory")
        pid = os.getpid()
        info = LockInfo(pid=pid, host=socket.gethostname(), started=round(time.time(), 3),
                        command=self.command, token=secrets.token_hex(16), boot_id=_boot_id(),
                        proc_start=_proc_start(pid))
        payload = json.dumps(asdict(info)) + "\n"
        for _ in range(20):
            try:
                created = _create_exclusive(self.path, payload)
            except OSError as exc:
                # Not "in use" (exit 4): the folder cannot be written, a plain failure (exit 1).
                raise WorkbenchError(f"run {self.run_dir.name}: cannot write its lock file {self.path}: "
                                     f"{exc.strerror or exc}") from None
            if created:
                self.info = info
                atexit.register(self.release)
                return self
            try:
                holder = _read_info(self.path)
            except (OSError, ValueError, KeyError, TypeError):
                raise RunLockedError(f"run {self.run_dir.name} has an unreadable lock file {self.path}: "
                                     f"if no process writes this run, delete it") from None
            if holder is None:
                continue  # released meanwhile: try again
            if not is_stale(holder):
                raise RunLockedError(f"run {self.run_dir.name} is in use by {holder.describe()}", holder)
            self._break_stale(holder)
        raise RunLockedError(f"run {self.run_dir.name}: could not take its lock {self.path} (contended)")

    def _break_stale(self, stale: LockInfo) -> None:
        """Remove the lock of a dead holder, under the break guard, only if it is still ``stale``."""
        guard = self.path.with_name(self.path.name + BREAK_SUFFIX)
        if not _create_exclusive(guard, json.dumps({"pid": os.getpid(), "host": socket.gethostname()})):
            if time.time() - _mtime(guard) > BREAK_GUARD_TIMEOUT_S:
                guard.unlink(missing_ok=True)  # its taker crashed mid-takeover
            time.sleep(0.05)
            return
        try:
            try:
                current = _read_info(self.path)
            except (OSError, ValueError, KeyError, TypeError):
                return
            if current is not None and current.token == stale.token:
                self.path.unlink(missing_ok=True)
        finally:
            guard.unlink(missing_ok=True)

    def release(self) -> None:
        """Remove the lock file if it is still ours (idempotent)."""
        if self.info is None:
            return
        try:
            current = _read_info(self.path)
            if current is not None and current.token == self.info.token:
                self.path.unlink(missing_ok=True)
        except (OSError, ValueError, KeyError, TypeError):
            pass
        finally:
            self.info = None
            atexit.unregister(self.release)

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def acquire_run_lock(run_dir, command: str = "", rank: int | None = None) -> RunLock:
    """Take the run's writer lock for rank 0 (``rank`` defaults to ``$RANK``, 0 outside torchrun);
    other ranks get a shared handle holding nothing. Raises RunLockedError naming the holder."""
    if rank is None:
        try:
            rank = int(os.environ.get("RANK", "0"))
        except ValueError:
            rank = 0
    return RunLock(run_dir, command, shared=rank != 0).acquire()
