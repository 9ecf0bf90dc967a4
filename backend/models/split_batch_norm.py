"""Batch norm over groups of the batch in one pass: MoCo's guard against the BN shortcut on one device.

With ``groups = s`` a training forward normalises ``s`` interleaved groups of the batch (rows
g, g + s, g + 2s, ...) with their own mean and variance, as the official MoCo CIFAR-10 demo's
and lightly's ``SplitBatchNorm`` do: the batch (N, C, ...) is regrouped to (N / s, s * C, ...)
and one ``batch_norm`` call computes every group's statistics. The running statistics are updated
per group and averaged over the groups, so evaluation (and ``groups = 1``) is plain batch norm.

The modules subclass ``nn.BatchNorm1d`` / ``nn.BatchNorm2d`` and keep their parameters and
buffers, so a state dict is the same as the plain network's: checkpoints, exports and
``SyncBatchNorm.convert_sync_batchnorm`` see ordinary batch norm (the last turns them back into
plain ones; ``all_split`` then says so and callers fall back to one forward per group).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterable, Iterator

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.modules.batchnorm import _BatchNorm


class _SplitForward:
    """The grouped training forward shared by the 1-d and 2-d classes."""

    groups: int = 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.groups
        if s <= 1 or not self.training:
            return super().forward(x)
        n, c = x.shape[0], x.shape[1]
        if n % s:
            raise ValueError(f"a batch of {n} rows does not split into {s} BatchNorm groups")
        self._check_input_dim(x)
        tracked = self.running_mean is not None
        factor = 0.0
        if tracked:
            self.num_batches_tracked.add_(1)
            factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        # (N, C, ...) -> (N/s, s*C, ...): row j, channel block g holds sample j*s + g.
        grouped = x.reshape(n // s, s * c, *x.shape[2:])
        mean = self.running_mean.repeat(s) if tracked else None
        var = self.running_var.repeat(s) if tracked else None
        weight = self.weight.repeat(s) if self.weight is not None else None
        bias = self.bias.repeat(s) if self.bias is not None else None
        out = F.batch_norm(grouped, mean, var, weight, bias, True, factor, self.eps)
        if tracked:
            with torch.no_grad():
                self.running_mean.copy_(mean.view(s, c).mean(0))
                self.running_var.copy_(var.view(s, c).mean(0))
        return out.reshape(x.shape)


class SplitBatchNorm1d(_SplitForward, nn.BatchNorm1d):
    """``nn.BatchNorm1d`` whose training forward normalises ``groups`` interleaved groups."""


class SplitBatchNorm2d(_SplitForward, nn.BatchNorm2d):
    """``nn.BatchNorm2d`` whose training forward normalises ``groups`` interleaved groups."""


_SPLIT_OF = {nn.BatchNorm1d: SplitBatchNorm1d, nn.BatchNorm2d: SplitBatchNorm2d}


def convert_to_split_bn(module: nn.Module) -> nn.Module:
    """Turn every plain ``BatchNorm1d``/``BatchNorm2d`` inside ``module`` into its split twin in
    place, sharing parameters and buffers (``groups`` starts at 1: plain behaviour)."""
    for child in module.children():
        twin = _SPLIT_OF.get(type(child))
        if twin is None:
            convert_to_split_bn(child)
        else:
            child.__class__ = twin  # the same object: its Parameters, buffers and settings stay
    return module


def has_split_bn(module: nn.Module) -> bool:
    """Whether ``module`` holds any split batch norm."""
    return any(isinstance(m, _SplitForward) for m in module.modules())


def all_split(modules: Iterable[nn.Module]) -> bool:
    """Whether every batch-norm layer in ``modules`` is a split one (vacuously true without BN)."""
    return all(isinstance(m, _SplitForward) for module in modules for m in module.modules()
               if isinstance(m, _BatchNorm))


@contextmanager
def bn_groups(modules: Iterable[nn.Module], groups: int) -> Iterator[None]:
    """Within the block, split batch norms in ``modules`` normalise ``groups`` groups."""
    layers = [m for module in modules for m in module.modules() if isinstance(m, _SplitForward)]
    for layer in layers:
        layer.groups = groups
    try:
        yield
    finally:
        for layer in layers:
            layer.groups = 1
