"""PIRL (Misra & van der Maaten 2020, "Self-supervised learning of pretext-invariant
representations").

The representation of an image should not change when the image is cut into a jigsaw puzzle.
f(v_I): backbone + linear layer to D (``model.projector_out_dim``) on the image (``views[0]``).
g(v_It): the 9 tiles of a jittered 3 x 3 grid of a second view (``views[1]``, ``views[0]`` when
there is only one), shuffled by a permutation drawn from ``permutation_set`` (so they come in a
random order, as the paper concatenates them), each encoded by the same backbone and mapped to D
by a linear layer, concatenated (9 D) and mapped to D by another. A memory bank (instdisc.py's,
momentum 0.5) holds f of every image; the loss is the paper's mixed one (``pirl_loss``, eq. 5):
``lam L(m_I, g(v_It)) + (1 - lam) L(m_I, f(v_I))``, lam = 0.5, t = 0.07, with m sampled bank
negatives; L is the non-parametric softmax (``bank_loss = "softmax"``, default here) or the
paper's NCE with Z = 1 (``"nce"``).

Choices for 32-96 px images: tiles are ``default_tile`` px (8 px at 32 px, 4 px at 16 px) and go
through the backbone at that size (a ViT interpolates its position embedding to the tile's patch
grid); 100 permutations (any fixed set serves: PIRL wants invariance, not the permutation's index).
The engine hooks (``prepare``, ``set_batch_indices``) are instdisc.py's ``BankMethod``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..pretext.jigsaw import TILES, jigsaw_batch, permutation_set
from ..pretext.memory_bank import pirl_loss
from . import register
from ._pretext import denormalise, mosaic, tiles_for_display
from .base import StepOutput
from .instdisc import BankMethod
from .spec import CONTRASTIVE, MethodSpec, Param, temperature

NUM_PERMUTATIONS = 100


SPEC = MethodSpec(
    paper="Misra & van der Maaten 2020, Self-Supervised Learning of Pretext-Invariant Representations",
    name="pirl", label="PIRL", family=CONTRASTIVE,
    help="Image vs its jigsaw-shuffled tiles, contrasted through a memory bank of image features.",
    params={"temperature": temperature(0.07),
            "num_negatives": Param(4096, "Memory-bank negatives drawn per image (the paper's m).", ge=1),
            "bank_momentum": Param(0.5, "Momentum of the memory-bank update (the paper: 0.5).",
                                   ge=0.0, lt=1.0),
            "bank_loss": Param("softmax", "Memory-bank loss: non-parametric softmax or the paper's NCE.",
                               choices=("softmax", "nce")),
            "pirl_lambda": Param(0.5, "PIRL: weight of the jigsaw term (1 - it weighs the image term).",
                                 ge=0.0, le=1.0)},
)


def jigsaw_source(views: list) -> torch.Tensor:
    """The view g cuts into a puzzle: the second one (the first when there is only one)."""
    return views[1] if len(views) > 1 else views[0]


def jigsaw_tiles(x: torch.Tensor, permutations: torch.Tensor, generator) -> torch.Tensor:
    """g's input: the 9 tiles of ``x`` in the order of a permutation drawn from ``permutations``
    (N, 9, C, t, t)."""
    return jigsaw_batch(x, permutations, generator=generator)[0]


@register(SPEC)
class PIRL(BankMethod):
    def __init__(self, cfg):
        dim = cfg.model.projector_out_dim
        super().__init__(cfg, dim)
        self.projector = nn.Linear(self.feature_dim, dim)          # f: the image head
        self.tile_head = nn.Linear(self.feature_dim, dim)          # per tile
        self.jigsaw_head = nn.Linear(TILES * dim, dim)             # g: the concatenated tiles
        self.permutations = permutation_set(NUM_PERMUTATIONS)     # (P, 9), CPU, fixed by seed 0
        self._jigsaw_gen = torch.Generator().manual_seed(cfg.runtime.seed + 19)

    def transformed(self, x: torch.Tensor) -> torch.Tensor:
        """g(v_It) (N, D): shuffled tiles of ``x`` through the backbone and the jigsaw heads."""
        tiles = jigsaw_tiles(x, self.permutations, self._jigsaw_gen)
        n, t = tiles.shape[:2]
        features = self.tile_head(self.backbone(tiles.flatten(0, 1).contiguous()))
        return self.jigsaw_head(features.reshape(n, t * features.shape[1]))

    def training_step(self, views, labels, progress):
        m = self.cfg.method
        image = views[0]
        idx = self.batch_indices(image.shape[0])
        v_image = self.projector(self.backbone(image))
        v_jigsaw = self.transformed(jigsaw_source(views))
        positive, negatives = self.bank_terms(idx)
        loss = pirl_loss(v_image, v_jigsaw, positive, negatives, lam=m.pirl_lambda,
                         temperature=m.temperature,
                         bank_size=self.bank.size if m.bank_loss == "nce" else None)
        self.bank.update(idx, v_image, m.bank_momentum)
        return StepOutput(loss=loss, z1=v_image, z2=v_jigsaw, extras={"jigsaw_similarity": (
            F.normalize(v_image.detach().float(), dim=1)
            * F.normalize(v_jigsaw.detach().float(), dim=1)).sum(dim=1).mean()})

    def state_extras(self) -> dict:
        return {**super().state_extras(), "jigsaw_rng": self._jigsaw_gen.get_state()}

    def load_state_extras(self, extras: dict) -> None:
        super().load_state_extras(extras)
        if "jigsaw_rng" in extras:
            self._jigsaw_gen.set_state(extras["jigsaw_rng"])


@torch.no_grad()
def preview_inputs(views, cfg, generator=None) -> list:
    """What the network receives: the image (first view) for f, and the shuffled tiles of the
    second view (the first when there is one) for g, drawn as ``transformed`` draws them, in [0, 1]."""
    tiles = jigsaw_tiles(jigsaw_source(views), permutation_set(NUM_PERMUTATIONS), generator)
    return [("image (for f)", denormalise(views[0], cfg)),
            ("shuffled tiles of view 2 (for g)", mosaic(tiles_for_display(tiles, cfg), 3, 3, gap=1))]
