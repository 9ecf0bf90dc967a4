"""SimCLR (Chen et al. 2020): two views, MLP projector, NT-Xent over the 2N x 2N similarities."""

from __future__ import annotations

from .. import losses
from ..distributed import gather_with_grad
from . import register
from .base import Method, StepOutput


@register
class SimCLR(Method):
    name = "simclr"
    label = "SimCLR"

    def __init__(self, cfg):
        super().__init__(cfg)
        self.projector = self.projector_head()

    def training_step(self, views, labels, progress):
        # Global views only (multi-crop locals, if configured, are extra positives we do not use).
        z1, z2 = (self.projector(self.backbone(v)) for v in views[:2])
        # Under torchrun every rank scores the global batch: negatives come from all ranks.
        loss = self.loss(gather_with_grad(z1), gather_with_grad(z2))
        return StepOutput(loss=loss, z1=z1, z2=z2)

    def loss(self, z1, z2):
        """The contrastive loss over the batch (DCL/DCLW override only this)."""
        return losses.nt_xent(z1, z2, temperature=self.cfg.method.temperature)
