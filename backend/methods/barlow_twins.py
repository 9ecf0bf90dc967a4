"""Barlow Twins (Zbontar et al. 2021, "Barlow Twins: self-supervised learning via redundancy
reduction"): two views, a wide MLP projector (solo-learn's CIFAR setting is 3 layers,
2048-2048-2048, BN + ReLU in the hidden layers: set ``model.projector_*``), and the
cross-correlation loss ``losses.barlow_twins`` with ``lambd = method.barlow_lambda``, scaled by
``method.barlow_scale``. Under torchrun the correlation matrix is computed over the global batch."""

from __future__ import annotations

from .. import losses
from . import register
from .base import PairLossMethod
from .spec import REDUNDANCY_REDUCTION, MethodSpec, Param


SPEC = MethodSpec(
    name="barlow_twins", label="Barlow Twins", family=REDUNDANCY_REDUCTION,
    paper="Zbontar et al. 2021, Barlow Twins: Self-Supervised Learning via Redundancy Reduction",
    help="Cross-correlation of the two views' projections driven to the identity.",
    params={
        "barlow_lambda": Param(0.005, "Barlow Twins: weight of the off-diagonal redundancy term.", gt=0.0),
        "barlow_scale": Param(0.1, "Barlow Twins: overall loss scale (solo-learn uses 0.1 on CIFAR).", gt=0.0),
    },
)


@register(SPEC)
class BarlowTwins(PairLossMethod):
    def loss(self, z1, z2):
        m = self.cfg.method
        return m.barlow_scale * losses.barlow_twins(z1, z2, lambd=m.barlow_lambda)
