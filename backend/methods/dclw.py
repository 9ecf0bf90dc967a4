"""DCLW (Yeh et al. 2022, "Decoupled contrastive learning"): DCL with each positive weighted by a
von Mises-Fisher factor (``losses.dclw``, eq. 7, width ``method.dclw_sigma``); everything else is
DCL's (dcl.py), only the loss differs."""

from __future__ import annotations

from .. import losses
from . import register
from .dcl import DCL
from .spec import CONTRASTIVE, MethodSpec, Param, temperature

SPEC = MethodSpec(
    name="dclw", label="DCLW", family=CONTRASTIVE,
    paper="Yeh et al. 2022, Decoupled Contrastive Learning (the weighted loss)",
    help="DCL with a von Mises-Fisher weight on each positive pair.",
    params={"temperature": temperature(),
            "dclw_sigma": Param(0.5, "DCLW: width of the von Mises-Fisher positive weighting.", gt=0.0)},
)


@register(SPEC)
class DCLW(DCL):
    def loss(self, z1, z2):
        m = self.cfg.method
        return losses.dclw(z1, z2, temperature=m.temperature, sigma=m.dclw_sigma)
