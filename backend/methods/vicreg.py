"""VICReg (Bardes et al. 2022, "VICReg: variance-invariance-covariance regularization for
self-supervised learning"): two views, a wide MLP expander (solo-learn's CIFAR setting is 3 layers,
2048-2048-2048, BN + ReLU in the hidden layers: set ``model.projector_*``), and ``losses.vicreg``
with ``sim_weight``, ``var_weight`` and ``cov_weight``. Under torchrun the variance and covariance
terms see the global batch."""

from __future__ import annotations

from .. import losses
from . import register
from .base import PairLossMethod
from .spec import REDUNDANCY_REDUCTION, MethodSpec, Param


SPEC = MethodSpec(
    name="vicreg", label="VICReg", family=REDUNDANCY_REDUCTION,
    paper="Bardes, Ponce and LeCun 2022, VICReg: Variance-Invariance-Covariance Regularization for Self-Supervised Learning",
    help="Variance, invariance and covariance terms on the two views' embeddings.",
    params={
        "sim_weight": Param(25.0, "VICReg: invariance (MSE) weight.", ge=0.0),
        "var_weight": Param(25.0, "VICReg: variance weight.", ge=0.0),
        "cov_weight": Param(1.0, "VICReg: covariance weight.", ge=0.0),
    },
)


@register(SPEC)
class VICReg(PairLossMethod):
    def loss(self, z1, z2):
        m = self.cfg.method
        return losses.vicreg(z1, z2, sim_weight=m.sim_weight, var_weight=m.var_weight, cov_weight=m.cov_weight)
