"""MoCo v2 (He et al. 2020; Chen et al. 2020): query encoder, momentum key encoder, a queue of
negatives, InfoNCE, MLP projector; key BN computed in shuffled groups (see split_bn_forward).
With ``shuffle_bn`` the encoders' batch norms become split ones (models.split_batch_norm), so all
groups go through in one pass, as the official CIFAR demo's SplitBatchNorm does.
MoCo v1 (mocov1.py) is this class with a linear head and the one-way loss."""

from __future__ import annotations

import torch

from .. import losses
from ..distributed import gather_no_grad
from . import register
from .base import Method, StepOutput
from ..models.split_batch_norm import convert_to_split_bn
from .components import FeatureQueue, grouped_forward, make_target, split_bn_forward
from .spec import CONTRASTIVE, MethodSpec, Param, momentum, queue_size, shuffle_bn, temperature

SHUFFLE_BN_GROUPS = 4


SPEC = MethodSpec(
    name="moco", label="MoCo v2", family=CONTRASTIVE,
    paper="Chen et al. 2020, Improved Baselines with Momentum Contrastive Learning",
    help="Momentum key encoder and a queue of negatives, InfoNCE, MLP projector.",
    params={"temperature": temperature(), "queue_size": queue_size(), "momentum": momentum(),
            "shuffle_bn": shuffle_bn(),
            "bn_splits": Param(4, "MoCo v2: with shuffle_bn, the number of BatchNorm groups the "
                               "keys are computed in (lightly and the official CIFAR demo: 8).", ge=1, le=64),
            "split_query_bn": Param(False, "MoCo v2: with shuffle_bn, the queries are also computed in bn_splits "
                                    "groups (the official demo's SplitBatchNorm on both encoders; "
                                    "off: queries see the whole batch's BN statistics)."),
            "enqueue_between_terms": Param(False, "MoCo v2: each loss term's keys enter the queue before the "
                                           "next term is scored (lightly's NTXentLoss memory bank, the cited "
                                           "benchmark's), so the second query also meets the first term's keys, "
                                           "its own image's among them, as negatives; off: both key batches "
                                           "enter after the step (the official CIFAR demo)."),
            "projector_bn": Param(True, "MoCo v2: BatchNorm in the projector's hidden layer (the official "
                                  "MoCo v2 and lightly heads are Linear-ReLU-Linear, without).")},
)


@register(SPEC)
class MoCoV2(Method):
    # (query view, key view) pairs of the loss: symmetrised, each view is the query for the other's
    # key (MoCo v1 overrides this with the original one-way pair).
    query_key_views = ((0, 1), (1, 0))

    def __init__(self, cfg):
        super().__init__(cfg)
        self.projector = self.build_projector()
        if cfg.method.shuffle_bn:  # grouped BN statistics in one forward pass (grouped_forward)
            convert_to_split_bn(self.backbone)
            convert_to_split_bn(self.projector)
        self.key_backbone = make_target(self.backbone)
        self.key_projector = make_target(self.projector)
        self.queue = FeatureQueue(cfg.method.queue_size, cfg.model.projector_out_dim)
        self._shuffle_gen = torch.Generator().manual_seed(cfg.runtime.seed + 7)

    def build_projector(self):
        """The query head (its EMA copy is the key head)."""
        return self.projector_head(batch_norm=self.cfg.method.projector_bn)

    def momentum_pairs(self):
        return [(self.backbone, self.key_backbone), (self.projector, self.key_projector)]

    def bn_groups(self) -> int:
        """BatchNorm groups of the shuffled keys (1 = off; MoCo v1 keeps SHUFFLE_BN_GROUPS)."""
        return getattr(self.cfg.method, "bn_splits", SHUFFLE_BN_GROUPS) if self.cfg.method.shuffle_bn else 1

    def queries(self, x: torch.Tensor) -> torch.Tensor:
        """Query embeddings; with ``split_query_bn`` in BN groups (SplitBatchNorm)."""
        groups = self.bn_groups() if getattr(self.cfg.method, "split_query_bn", False) else 1
        return grouped_forward(lambda v: self.projector(self.backbone(v)), x, groups,
                               (self.backbone, self.projector))

    def keys(self, x: torch.Tensor) -> torch.Tensor:
        """Key embeddings from the momentum encoder (no gradient)."""
        with torch.no_grad():
            return split_bn_forward(lambda v: self.key_projector(self.key_backbone(v)), x, self.bn_groups(),
                                    self._shuffle_gen, (self.key_backbone, self.key_projector))

    def training_step(self, views, labels, progress):
        pairs = self.query_key_views
        queries = {i: self.queries(views[i]) for i in sorted({a for a, _ in pairs})}
        keys = {i: self.keys(views[i]) for i in sorted({b for _, b in pairs})}
        t = self.cfg.method.temperature
        if getattr(self.cfg.method, "enqueue_between_terms", False):
            loss = 0.0
            for a, b in pairs:
                loss = loss + losses.info_nce(queries[a], keys[b], self.queue.features.clone(), t)
                self.enqueue(keys[b])
            loss = loss / len(pairs)
        else:
            negatives = self.queue.features.clone()
            loss = sum(losses.info_nce(queries[a], keys[b], negatives, t) for a, b in pairs) / len(pairs)
            self.enqueue(torch.cat([keys[i] for i in sorted(keys)]))
        z1, z2 = queries[0], queries.get(1, keys.get(1))
        return StepOutput(loss=loss, z1=z1, z2=z2, extras={"queue_fill": self.queue.fill_fraction()})

    def enqueue(self, keys: torch.Tensor) -> None:
        """Push unit-length ``keys`` of every rank into the queue, so all ranks keep the same negatives."""
        self.queue.push(gather_no_grad(torch.nn.functional.normalize(keys.float(), dim=1)))

    def state_extras(self) -> dict:
        """Non-module state the checkpoint must hold for exact resume."""
        return {"shuffle_rng": self._shuffle_gen.get_state()}

    def load_state_extras(self, extras: dict) -> None:
        if "shuffle_rng" in extras:
            self._shuffle_gen.set_state(extras["shuffle_rng"])
