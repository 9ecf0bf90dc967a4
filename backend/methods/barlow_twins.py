"""Barlow Twins (Zbontar et al. 2021, "Barlow Twins: self-supervised learning via redundancy
reduction"): two views, a wide MLP projector (solo-learn's CIFAR setting is 3 layers,
2048-2048-2048, BN + ReLU in the hidden layers: set ``model.projector_*``), and the
cross-correlation loss ``losses.barlow_twins`` with ``lambd = method.barlow_lambda``, scaled by
``method.barlow_scale``. Under torchrun the correlation matrix is computed over the global batch."""

from __future__ import annotations

from .. import losses
from ..distributed import gather_with_grad
from . import register
from .base import Method, StepOutput


@register
class BarlowTwins(Method):
    name = "barlow_twins"
    label = "Barlow Twins"

    def __init__(self, cfg):
        super().__init__(cfg)
        self.projector = self.projector_head()

    def training_step(self, views, labels, progress):
        m = self.cfg.method
        # Each view through the network on its own, so BN normalises each branch separately.
        z1, z2 = (self.projector(self.backbone(v)) for v in views[:2])
        loss = m.barlow_scale * losses.barlow_twins(gather_with_grad(z1), gather_with_grad(z2),
                                                    lambd=m.barlow_lambda)
        return StepOutput(loss=loss, z1=z1, z2=z2)
