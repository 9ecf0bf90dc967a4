"""Barlow Twins (Zbontar et al. 2021, "Barlow Twins: self-supervised learning via redundancy
reduction"): two views, a wide MLP projector (solo-learn's CIFAR setting is 3 layers,
2048-2048-2048, BN + ReLU in the hidden layers: set ``model.projector_*``), and the
cross-correlation loss ``losses.barlow_twins`` with ``lambd = method.barlow_lambda``, scaled by
``method.barlow_scale``. Under torchrun the correlation matrix is computed over the global batch."""

from __future__ import annotations

from .. import losses
from . import register
from .base import PairLossMethod


@register
class BarlowTwins(PairLossMethod):
    name = "barlow_twins"
    label = "Barlow Twins"

    def loss(self, z1, z2):
        m = self.cfg.method
        return m.barlow_scale * losses.barlow_twins(z1, z2, lambd=m.barlow_lambda)
