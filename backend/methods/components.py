"""Shared machinery that methods combine: EMA targets, momentum schedule, feature queue, and the
shuffled/split forward pass that keeps BN from leaking the positive pair on one device."""

from __future__ import annotations

import copy
import math
from typing import Callable, Sequence

import torch
from torch import nn

from ..models.split_batch_norm import all_split, bn_groups


def make_target(module: nn.Module) -> nn.Module:
    """A frozen copy of ``module`` to be updated by EMA (no gradients ever reach it)."""
    target = copy.deepcopy(module)
    for p in target.parameters():
        p.requires_grad_(False)
    return target


@torch.no_grad()
def ema_update(online: nn.Module, target: nn.Module, momentum: float) -> None:
    """target = momentum * target + (1 - momentum) * online, for parameters; buffers are copied."""
    online_params = [p.detach() for p in online.parameters()]
    target_params = list(target.parameters())
    torch._foreach_mul_(target_params, momentum)
    torch._foreach_add_(target_params, online_params, alpha=1.0 - momentum)
    for b_online, b_target in zip(online.buffers(), target.buffers()):
        b_target.copy_(b_online)


def cosine_momentum(base: float, final: float, progress: float) -> float:
    """BYOL's schedule: momentum rises from ``base`` to ``final`` along a half cosine."""
    progress = min(max(progress, 0.0), 1.0)
    return final - (final - base) * (math.cos(math.pi * progress) + 1) / 2


class FeatureQueue(nn.Module):
    """A FIFO of the most recent ``size`` embeddings (rows), kept as buffers so checkpoints hold it."""

    def __init__(self, size: int, dim: int, *, normalize: bool = True):
        super().__init__()
        init = torch.randn(size, dim)
        if normalize:
            init = nn.functional.normalize(init, dim=1)
        self.register_buffer("features", init)
        self.register_buffer("labels", torch.full((size,), -1, dtype=torch.long))
        self.register_buffer("pointer", torch.zeros((), dtype=torch.long))
        self.register_buffer("filled", torch.zeros((), dtype=torch.long))

    @property
    def size(self) -> int:
        return self.features.shape[0]

    @torch.no_grad()
    def push(self, rows: torch.Tensor, labels: torch.Tensor | None = None) -> None:
        """Insert ``rows`` (B, D) replacing the oldest entries (wraps around)."""
        rows = rows.detach().to(self.features.dtype)
        n = min(rows.shape[0], self.size)
        rows = rows[-n:]
        idx = (self.pointer + torch.arange(n, device=rows.device)) % self.size
        self.features[idx] = rows
        if labels is not None:
            self.labels[idx] = labels[-n:].to(self.labels.device)
        self.pointer.copy_((self.pointer + n) % self.size)
        self.filled.copy_(torch.clamp(self.filled + n, max=self.size))

    def fill_fraction(self) -> torch.Tensor:
        """Share of the queue holding real embeddings (starts at 0, reaches 1)."""
        return self.filled.float() / self.size

    def valid(self) -> torch.Tensor:
        """The rows that hold real embeddings so far."""
        return self.features[: int(self.filled)] if int(self.filled) < self.size else self.features


def grouped_forward(encoder: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, groups: int,
                    modules: Sequence[nn.Module] = ()) -> torch.Tensor:
    """``encoder(x)`` with batch-norm statistics computed per group of rows.

    When every BN layer of ``modules`` (the networks ``encoder`` runs) is a split one
    (``models.split_batch_norm``) and the batch divides evenly, all groups go through in one pass
    (groups of interleaved rows); otherwise the batch is cut into ``groups`` contiguous chunks and
    each chunk is its own forward. ``groups`` is capped so each group keeps 8 or more rows."""
    n = x.shape[0]
    groups = max(1, min(groups, n // 8))
    if groups == 1:
        return encoder(x)
    if n % groups == 0 and all_split(modules):
        with bn_groups(modules, groups):
            return encoder(x)
    return torch.cat([encoder(chunk) for chunk in x.chunk(groups)])


def split_bn_forward(encoder: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, splits: int,
                     generator: torch.Generator | None = None,
                     modules: Sequence[nn.Module] = ()) -> torch.Tensor:
    """Forward ``x`` in ``splits`` shuffled groups so each group gets its own BN statistics.

    On one device this emulates MoCo's shuffling BN: the key of sample i is normalised with the
    statistics of a random subset, not of the batch that also holds its query, which removes the
    shortcut BN would otherwise offer. Output rows are returned in the original order; see
    ``grouped_forward`` for ``modules``."""
    n = x.shape[0]
    if max(1, min(splits, n // 8)) == 1:
        return encoder(x)
    perm = torch.randperm(n, generator=generator).to(x.device)
    out = grouped_forward(encoder, x[perm], splits, modules)
    restored = torch.empty_like(out)
    restored[perm] = out
    return restored


@torch.no_grad()
def global_sinkhorn(scores: torch.Tensor, epsilon: float, iterations: int) -> torch.Tensor:
    """SwAV codes computed over the global batch: under torchrun the scores of every rank are
    gathered, Sinkhorn-Knopp runs on the whole batch (its marginals are batch-wide), and this
    rank's rows are returned. Identical to ``losses.sinkhorn`` in one process."""
    from ..distributed import gather_no_grad, is_enabled
    from ..losses import sinkhorn

    if not is_enabled():
        return sinkhorn(scores, epsilon=epsilon, iterations=iterations)
    import torch.distributed as dist

    every = gather_no_grad(scores)
    codes = sinkhorn(every, epsilon=epsilon, iterations=iterations)
    n = scores.shape[0]
    return codes[dist.get_rank() * n:(dist.get_rank() + 1) * n]


@torch.no_grad()
def global_center_update(center: torch.Tensor, teacher_out, momentum: float) -> torch.Tensor:
    """DINO's centre update with the teacher-output mean taken over every rank's batch."""
    from ..distributed import all_reduce_mean

    batch_mean = all_reduce_mean(torch.cat([t.float() for t in teacher_out]).mean(dim=0, keepdim=True))
    return center * momentum + batch_mean.reshape(center.shape) * (1 - momentum)


def multicrop_forward(encoder, views: list[torch.Tensor]) -> list[torch.Tensor]:
    """``encoder`` applied to every view, one forward pass per run of same-sized views.

    Consecutive views of equal resolution (the global crops, then the local crops) are
    concatenated into one batch, as DINO's ``MultiCropWrapper`` and SwAV's multi-resolution
    forward do; the output is split back into one tensor per view, in order."""
    outputs: list[torch.Tensor] = []
    start = 0
    while start < len(views):
        end = start + 1
        while end < len(views) and views[end].shape[-2:] == views[start].shape[-2:]:
            end += 1
        outputs.extend(encoder(torch.cat(views[start:end])).chunk(end - start))
        start = end
    return outputs
