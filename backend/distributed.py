"""torch.distributed plumbing for runs launched by torchrun (NCCL on GPUs, gloo on CPU).

Single-process runs never initialise a process group; every helper here then degrades to the
identity, so methods call ``gather_with_grad``/``all_reduce_mean`` unconditionally.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    """Rank layout of the current process."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    shared_fs: bool = True   # every rank sees the run directory (backend.run_start agrees on it)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def launched_by_torchrun() -> bool:
    """True when torchrun's environment variables are present."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1


def init_distributed(device_type: str) -> DistInfo:
    """Join the process group torchrun prepared (idempotent); single process -> DistInfo()."""
    if not launched_by_torchrun():
        return DistInfo()
    if not dist.is_initialized():
        if device_type == "cuda":  # object collectives under NCCL run on the current device
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
    return DistInfo(rank=dist.get_rank(), world_size=dist.get_world_size(),
                    local_rank=int(os.environ.get("LOCAL_RANK", 0)))


def is_enabled() -> bool:
    """True inside an initialised process group of more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` from every rank along dim 0, keeping the gradient path to each rank's part.

    Every rank then computes the same global loss; the all-gather's backward sums the gradient
    copies and DDP's averaging divides them again, which yields exactly the gradient of the
    single-process loss over the concatenated batch."""
    if not is_enabled():
        return x
    import warnings

    import torch.distributed.nn.functional as dist_fn
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # the public autograd all_gather is "deprecated"
        return torch.cat(dist_fn.all_gather(x.contiguous()), dim=0)


@torch.no_grad()
def gather_no_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` from every rank along dim 0 (constants such as keys for a queue)."""
    if not is_enabled():
        return x
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts, dim=0)


@torch.no_grad()
def all_reduce_mean(x: torch.Tensor) -> torch.Tensor:
    """Mean of ``x`` over ranks (returns a new tensor; identity in one process)."""
    if not is_enabled():
        return x
    out = x.clone()
    dist.all_reduce(out)
    return out / dist.get_world_size()


@torch.no_grad()
def all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    """Sum of ``x`` over ranks (returns a new tensor; identity in one process)."""
    if not is_enabled():
        return x
    out = x.clone()
    dist.all_reduce(out)
    return out


def broadcast_object(obj, src: int = 0):
    """Send a picklable Python value from ``src`` to every rank (identity in one process)."""
    if not is_enabled():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_gather_object(obj) -> list:
    """Every rank's picklable ``obj``, in rank order (``[obj]`` in one process)."""
    if not is_enabled():
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def barrier() -> None:
    """Wait for every rank (no-op in one process)."""
    if is_enabled():
        dist.barrier()


def local_leader_first(work, local_rank: int, *, hours: float = 12.0):
    """``work()`` on every rank, local rank 0 of each node first, the others after it finished:
    the first run's data cache is decoded once per node (with every CPU) instead of once per rank,
    and the rest read it. The wait is a gloo barrier of its own with a long timeout (decoding
    ImageNet takes longer than the default collective timeout); in one process just ``work()``."""
    if not is_enabled():
        return work()
    from datetime import timedelta

    group = dist.new_group(backend="gloo", timeout=timedelta(hours=hours))
    try:
        if local_rank != 0:
            dist.barrier(group=group)
        result = work()
        if local_rank == 0:
            dist.barrier(group=group)
        return result
    finally:
        dist.destroy_process_group(group)


def cleanup() -> None:
    """Leave the process group."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
