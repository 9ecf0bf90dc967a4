"""SimCLR (Chen et al. 2020): two views, MLP projector, NT-Xent over the 2N x 2N similarities.
Under torchrun every rank scores the global batch, so negatives come from all ranks."""

from __future__ import annotations

from .. import losses
from . import register
from .base import PairLossMethod
from .spec import CONTRASTIVE, MethodSpec, Param, temperature


SPEC = MethodSpec(
    name="simclr", label="SimCLR", family=CONTRASTIVE,
    paper="Chen et al. 2020, A Simple Framework for Contrastive Learning of Visual Representations",
    help="Two views, MLP projector, NT-Xent over the 2N x 2N similarities.",
    params={"temperature": temperature(),
            "projector_last_bn": Param(False, "SimCLR: BatchNorm on the projector output (the official TF "
                                       "head; lightly's SimCLRProjectionHead has none).")},
)


@register(SPEC)
class SimCLR(PairLossMethod):
    def __init__(self, cfg):
        super().__init__(cfg)
        if getattr(cfg.method, "projector_last_bn", False):  # DCL/DCLW (own SPECs) never set it
            self.projector = self.projector_head(last_bn=True)

    def loss(self, z1, z2):
        """The contrastive loss over the batch (DCL/DCLW override only this)."""
        return losses.nt_xent(z1, z2, temperature=self.cfg.method.temperature)
