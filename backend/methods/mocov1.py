"""MoCo v1 (He et al. 2020, "Momentum contrast for unsupervised visual representation learning").

The original MoCo: a momentum key encoder, a queue of negative keys and InfoNCE with temperature
0.07 on a *linear* 128-d head (the MLP head came with v2). The loss is one-way, as in the paper's
Algorithm 1: view 1 is the query, view 2 the key, and only view 2's keys enter the queue. Key
encoder, queue and shuffled BN are MoCo v2's (moco.py); only the head and the view pairing differ.
The weaker v1 augmentation (no blur, colour jitter always on) lives in the preset.
"""

from __future__ import annotations

from torch import nn

from . import register
from .moco import MoCoV2
from .spec import CONTRASTIVE, MethodSpec, momentum, queue_size, shuffle_bn, temperature


SPEC = MethodSpec(
    name="mocov1", label="MoCo v1", family=CONTRASTIVE,
    paper="He et al. 2020, Momentum Contrast for Unsupervised Visual Representation Learning",
    help="The original MoCo: linear head, one-way InfoNCE against a queue of keys.",
    params={"temperature": temperature(), "queue_size": queue_size(), "momentum": momentum(),
            "shuffle_bn": shuffle_bn()},
)


@register(SPEC)
class MoCoV1(MoCoV2):
    query_key_views = ((0, 1),)  # query = view 1, key = view 2 (Algorithm 1)

    def build_projector(self):
        """A single Linear layer to ``projector_out_dim`` (the projector_hidden/layers settings
        do not apply)."""
        return nn.Linear(self.feature_dim, self.cfg.model.projector_out_dim)
