"""Opening a run for training on every rank: one writer, one config.

Rank 0 alone prepares the run (creates its directory for a new run, or checks an existing one),
takes its writer lock (``backend.run_lock``) before touching anything in it, and reads the config.
Every other rank waits for rank 0 (a broadcast over the process group torchrun prepared), writes
nothing, and trains with the config rank 0 broadcast - so ``--config``/``--preset``/``--set`` and
``--workspace`` (a directory named by rank 0) work under any torchrun layout.

Shared filesystem or not: after the broadcast every rank reports whether it sees the run's
``config.json``. When one does not (another node without a shared filesystem), all ranks agree on
``DistInfo.shared_fs = False``: that node's local rank 0 says so in one log line, and a resumed run's
checkpoint is broadcast from rank 0 too (``backend.training.setup.prepare``).
"""

from __future__ import annotations

import socket
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from . import distributed as D
from .config import ExperimentConfig
from .errors import ConfigError, WorkbenchError
from .run_lock import RunLock, RunLockedError, acquire_run_lock
from .runs import CONFIG_FILE, read_run_config

LOCK_COMMAND = "sslwb train"


@dataclass
class OpenedRun:
    """A run every rank agreed to train: its directory, config, rank 0's lock, the rank layout."""

    run_dir: Path
    cfg: ExperimentConfig
    lock: RunLock
    dist: D.DistInfo

    def release(self) -> None:
        """Release rank 0's writer lock (a no-op on other ranks)."""
        self.lock.release()


def lock_run(run_dir: Path) -> RunLock:
    """Rank 0's writer lock of ``run_dir`` (raises RunLockedError naming the holder)."""
    return acquire_run_lock(run_dir, LOCK_COMMAND, rank=0)


def existing_run(run_dir: Path) -> Callable[[], tuple[Path, RunLock]]:
    """The rank-0 setup of an existing run directory: it must exist; its lock is taken."""
    def setup():
        if not Path(run_dir).is_dir():
            raise ConfigError(f"run directory {run_dir} does not exist")
        return Path(run_dir), lock_run(Path(run_dir))
    return setup


def device_hint(run_dir: Path | None, cfg: ExperimentConfig | None) -> str:
    """The device a rank expects to train on, to pick the process group's backend."""
    if cfg is not None:
        return cfg.runtime.device
    try:
        return read_run_config(run_dir).runtime.device
    except (WorkbenchError, TypeError):
        import torch
        return "cuda" if torch.cuda.is_available() else "cpu"


def join_group(hint: str) -> D.DistInfo:
    """Under torchrun, join the group (NCCL when training on CUDA, gloo otherwise)."""
    if not D.launched_by_torchrun():
        return D.DistInfo()
    import torch
    wants_cuda = hint != "cpu" and torch.cuda.is_available()
    return D.init_distributed("cuda" if wants_cuda else "cpu")


def report_lock_refusal(exc: RunLockedError) -> int:
    """A refused lock: one sentence on stderr and as a JSON error line on stdout, nothing written
    in the run (it belongs to its holder)."""
    import json
    print(f"error: {exc}", file=sys.stderr)
    print(json.dumps({"kind": "error", "message": str(exc), "exit_code": exc.exit_code}), flush=True)
    return exc.exit_code


def open_run(dist: D.DistInfo, setup: Callable[[], tuple[Path, RunLock]],
             on_error: Callable[[WorkbenchError], int]) -> OpenedRun | int:
    """Run ``setup`` on rank 0 (returns the run directory with its lock held), broadcast the run
    and its config, agree on a shared filesystem; an exit code when rank 0 failed (every rank
    returns it; only rank 0 reported it through ``on_error``)."""
    payload, lock = None, RunLock(".", shared=True)
    if dist.is_main:
        try:
            run_dir, lock = setup()
            cfg = read_run_config(run_dir)
            payload = {"run_dir": str(Path(run_dir).absolute()), "config": cfg.to_dict()}
        except WorkbenchError as exc:
            try:  # reported while the lock is still held: the error event is this writer's
                code = report_lock_refusal(exc) if isinstance(exc, RunLockedError) else on_error(exc)
            finally:
                lock.release()
            payload = {"exit_code": code}
    payload = D.broadcast_object(payload)  # the barrier: other ranks wait here for rank 0
    if "exit_code" in payload:
        return payload["exit_code"]
    run_dir = Path(payload["run_dir"])
    cfg = read_run_config(run_dir) if not dist.enabled else ExperimentConfig.from_dict(payload["config"])
    if dist.enabled:
        visible = dist.is_main or (run_dir / CONFIG_FILE).is_file()
        seen = D.all_gather_object(visible)
        dist = replace(dist, shared_fs=all(seen))
        if not visible and dist.local_rank == 0:
            print(f"note: {socket.gethostname()} (rank {dist.rank}) does not see the run directory "
                  f"{run_dir} (no shared filesystem): its ranks use the config broadcast from rank 0 and "
                  f"write nothing", file=sys.stderr, flush=True)
    return OpenedRun(run_dir, cfg, lock, dist)
