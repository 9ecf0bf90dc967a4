"""DCL and DCLW (Yeh et al. 2022, "Decoupled contrastive learning").

SimCLR with the positive pair removed from the InfoNCE denominator (``losses.dcl``, eq. 6), which
removes the negative-positive coupling that makes SimCLR need large batches; DCLW additionally
weights each positive by a von Mises-Fisher factor (``losses.dclw``, eq. 7, width
``method.dclw_sigma``). Views, projector and the all-gather under torchrun are SimCLR's: both
classes override only the loss.
"""

from __future__ import annotations

from .. import losses
from . import register
from .simclr import SimCLR


@register
class DCL(SimCLR):
    name = "dcl"
    label = "DCL"

    def loss(self, z1, z2):
        return losses.dcl(z1, z2, temperature=self.cfg.method.temperature)


@register
class DCLW(DCL):
    name = "dclw"
    label = "DCLW"

    def loss(self, z1, z2):
        m = self.cfg.method
        return losses.dclw(z1, z2, temperature=m.temperature, sigma=m.dclw_sigma)
