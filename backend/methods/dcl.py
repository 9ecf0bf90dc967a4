"""DCL (Yeh et al. 2022, "Decoupled contrastive learning").

SimCLR with the positive pair removed from the InfoNCE denominator (``losses.dcl``, eq. 6), which
removes the negative-positive coupling that makes SimCLR need large batches; DCLW additionally
weights each positive (dclw.py). Views, projector and the all-gather under torchrun are SimCLR's:
the class overrides only the loss.
"""

from __future__ import annotations

from .. import losses
from . import register
from .simclr import SimCLR
from .spec import CONTRASTIVE, MethodSpec, temperature


SPEC = MethodSpec(
    name="dcl", label="DCL", family=CONTRASTIVE,
    paper="Yeh et al. 2022, Decoupled Contrastive Learning",
    help="SimCLR without the positive pair in the InfoNCE denominator.",
    params={"temperature": temperature()},
)


@register(SPEC)
class DCL(SimCLR):
    def loss(self, z1, z2):
        return losses.dcl(z1, z2, temperature=self.cfg.method.temperature)
