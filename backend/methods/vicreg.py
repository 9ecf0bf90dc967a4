"""VICReg (Bardes et al. 2022, "VICReg: variance-invariance-covariance regularization for
self-supervised learning"): two views, a wide MLP expander (solo-learn's CIFAR setting is 3 layers,
2048-2048-2048, BN + ReLU in the hidden layers: set ``model.projector_*``), and ``losses.vicreg``
with ``sim_weight``, ``var_weight`` and ``cov_weight``. Under torchrun the variance and covariance
terms see the global batch."""

from __future__ import annotations

from .. import losses
from ..distributed import gather_with_grad
from . import register
from .base import Method, StepOutput


@register
class VICReg(Method):
    name = "vicreg"
    label = "VICReg"

    def __init__(self, cfg):
        super().__init__(cfg)
        self.projector = self.projector_head()

    def training_step(self, views, labels, progress):
        m = self.cfg.method
        z1, z2 = (self.projector(self.backbone(v)) for v in views[:2])
        loss = losses.vicreg(gather_with_grad(z1), gather_with_grad(z2), sim_weight=m.sim_weight,
                             var_weight=m.var_weight, cov_weight=m.cov_weight)
        return StepOutput(loss=loss, z1=z1, z2=z2)
