"""MoCo v2 (He et al. 2020; Chen et al. 2020): query encoder, momentum key encoder, a queue of
negatives, InfoNCE, MLP projector; key BN computed in shuffled groups (see split_bn_forward)."""

from __future__ import annotations

import torch

from .. import losses
from . import register
from .base import Method, StepOutput
from .components import FeatureQueue, make_target, split_bn_forward

SHUFFLE_BN_GROUPS = 4


@register
class MoCoV2(Method):
    name = "moco"
    label = "MoCo v2"

    def __init__(self, cfg):
        super().__init__(cfg)
        self.projector = self.projector_head()
        self.key_backbone = make_target(self.backbone)
        self.key_projector = make_target(self.projector)
        self.queue = FeatureQueue(cfg.method.queue_size, cfg.model.projector_out_dim)
        self._shuffle_gen = torch.Generator().manual_seed(cfg.runtime.seed + 7)

    def momentum_pairs(self):
        return [(self.backbone, self.key_backbone), (self.projector, self.key_projector)]

    def keys(self, x: torch.Tensor) -> torch.Tensor:
        """Key embeddings from the momentum encoder (no gradient)."""
        groups = SHUFFLE_BN_GROUPS if self.cfg.method.shuffle_bn else 1
        with torch.no_grad():
            return split_bn_forward(lambda v: self.key_projector(self.key_backbone(v)), x, groups,
                                    self._shuffle_gen)

    def training_step(self, views, labels, progress):
        x1, x2 = views[:2]
        q1, q2 = (self.projector(self.backbone(v)) for v in (x1, x2))
        k1, k2 = self.keys(x1), self.keys(x2)
        negatives = self.queue.features.clone()
        # Symmetrised loss: each view is the query for the other's key.
        t = self.cfg.method.temperature
        loss = 0.5 * (losses.info_nce(q1, k2, negatives, t) + losses.info_nce(q2, k1, negatives, t))
        self.queue.push(torch.nn.functional.normalize(torch.cat([k1, k2]).float(), dim=1))
        return StepOutput(loss=loss, z1=q1, z2=q2, extras={"queue_fill": self.queue.fill_fraction()})

    def state_extras(self) -> dict:
        """Non-module state the checkpoint must hold for exact resume."""
        return {"shuffle_rng": self._shuffle_gen.get_state()}

    def load_state_extras(self, extras: dict) -> None:
        if "shuffle_rng" in extras:
            self._shuffle_gen.set_state(extras["shuffle_rng"])
