"""BYOL (Grill et al. 2020, "Bootstrap your own latent").

An online network (backbone, projector, predictor) predicts the projection that a target network
(an EMA copy of backbone and projector, no predictor) gives the other view. The loss is the
symmetrised negative cosine (``losses.negative_cosine``, the target a constant); the target's
momentum rises from ``method.momentum`` to ``method.momentum_final`` along a half cosine (BYOL
section 3.2), applied by the engine through ``momentum_pairs``. MoCo v3 (mocov3.py) reuses this
class with other heads and a contrastive loss.
"""

from __future__ import annotations

import torch

from .. import losses
from . import register
from .base import Method, StepOutput
from .components import make_target
from .spec import DISTILLATION, MethodSpec, momentum, momentum_final


SPEC = MethodSpec(
    name="byol", label="BYOL", family=DISTILLATION,
    paper="Grill et al. 2020, Bootstrap Your Own Latent: A New Approach to Self-Supervised Learning",
    help="An online network predicts an EMA target network's projection of the other view.",
    params={"momentum": momentum(), "momentum_final": momentum_final()},
    reads=("model.predictor_hidden_dim",),
)


@register(SPEC)
class BYOL(Method):
    cosine_momentum_schedule = True

    def __init__(self, cfg):
        super().__init__(cfg)
        self.projector, self.predictor = self.build_heads()
        self.target_backbone = make_target(self.backbone)
        self.target_projector = make_target(self.projector)

    def build_heads(self):
        """(projector, predictor): BYOL's two Linear-BN-ReLU-Linear MLPs."""
        return self.projector_head(), self.predictor_head()

    def momentum_pairs(self):
        return [(self.backbone, self.target_backbone), (self.projector, self.target_projector)]

    @torch.no_grad()
    def targets(self, x: torch.Tensor) -> torch.Tensor:
        """Target-network projections (constants)."""
        return self.target_projector(self.target_backbone(x))

    def loss(self, p1, p2, t1, t2) -> torch.Tensor:
        """Each view's prediction regresses the other view's target projection."""
        return 0.5 * (losses.negative_cosine(p1, t2) + losses.negative_cosine(p2, t1))

    def training_step(self, views, labels, progress):
        x1, x2 = views[:2]
        z1, z2 = (self.projector(self.backbone(v)) for v in (x1, x2))
        p1, p2 = self.predictor(z1), self.predictor(z2)
        t1, t2 = self.targets(x1), self.targets(x2)
        return StepOutput(loss=self.loss(p1, p2, t1, t2), z1=z1, z2=z2)
