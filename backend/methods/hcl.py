"""HCL (Robinson et al. 2021, "Contrastive learning with hard negative samples").

SimCLR's views, projector and 2N-anchor batch with the negatives reweighted towards the hard ones
(importance weights ``neg^beta``, concentration ``beta``) and debiased for same-class negatives
(class prior ``tau_plus``, Chuang et al. 2020): ``losses.hcl`` (eq. 3 and the authors' image
code). beta = tau_plus = 0 is SimCLR's NT-Xent exactly. Defaults beta = 1, tau_plus = 0.1 and
SimCLR's t = 0.5: the values of the authors' image experiments as far as known; tune them.
"""

from __future__ import annotations

from .. import losses
from . import register
from .simclr import SimCLR
from .spec import CONTRASTIVE, MethodSpec, Param, temperature


SPEC = MethodSpec(
    paper="Robinson et al. 2021, Contrastive Learning with Hard Negative Samples",
    name="hcl", label="HCL", family=CONTRASTIVE,
    help="SimCLR with hardness-weighted, debiased negatives.",
    params={"temperature": temperature(),
            "beta": Param(1.0, "HCL: concentration on hard negatives (0 = uniform weights).", ge=0.0),
            "tau_plus": Param(0.1, "HCL: prior share of same-class negatives (0 = no debiasing).",
                              ge=0.0, lt=1.0)},
)


@register(SPEC)
class HCL(SimCLR):
    def loss(self, z1, z2):
        m = self.cfg.method
        return losses.hcl(z1, z2, temperature=m.temperature, beta=m.beta, tau_plus=m.tau_plus)
