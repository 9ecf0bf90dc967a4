"""Jigsaw puzzles (Noroozi & Favaro 2016, "Unsupervised learning of visual representations by
solving jigsaw puzzles").

The 9 tiles of a jittered 3 x 3 grid of the first view are shuffled by one permutation drawn
from a fixed set (``backend.pretext.jigsaw``: the paper's maximal-average-Hamming greedy choice,
built once at construction and kept as a buffer so checkpoints carry it) and normalised per tile
(the paper's counter to low-level shortcuts). All N*9 tiles go through the shared backbone in one
batch; the 9 features of a puzzle are concatenated in their shuffled order and an MLP
(Linear-BN-ReLU of width 512, then one logit per permutation; the paper's fc7/fc8) predicts the
permutation index. Cross entropy.

Choices for 32-96 px images: ``num_permutations`` defaults to 64 (the paper's best is 1000 on
225 px crops; an 8 px tile carries little evidence and choosing 1000 takes about 30 s), tiles of
8 px in 10 px cells at 32 px (``backend.pretext.patches``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..models.heads import mlp_head
from ..pretext.jigsaw import TILES, jigsaw_batch, normalise_tiles, permutation_set
from . import register
from ._pretext import PretextMethod, mosaic, tiles_for_display
from .base import StepOutput
from .spec import PRETEXT, MethodSpec, Param

HIDDEN = 512
PERMUTATION_SEED = 0  # the set is a fixed part of the task, the same for every run

SPEC = MethodSpec(
    paper="Noroozi & Favaro 2016, Unsupervised Learning of Visual Representations by Solving Jigsaw Puzzles",
    name="jigsaw", label="Jigsaw puzzles", family=PRETEXT,
    help="Shuffle the 9 tiles of a 3 x 3 grid by one of a fixed set of permutations; predict which.",
    params={"num_permutations": Param(64, "Size of the fixed permutation set (classes of the "
                                          "task); chosen once when the method is built.", ge=2, le=1000)},
)


@register(SPEC)
class Jigsaw(PretextMethod):
    def __init__(self, cfg):
        super().__init__(cfg)
        self.register_buffer("permutations", permutation_set(cfg.method.num_permutations, PERMUTATION_SEED))
        self.classifier = mlp_head(TILES * self.feature_dim, HIDDEN, cfg.method.num_permutations, 2)

    def logits(self, shuffled: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(permutation logits (N, P), tile features (N, 9, F)) of shuffled tiles (N, 9, C, t, t)."""
        n = shuffled.shape[0]
        features = self.backbone(shuffled.flatten(0, 1)).view(n, TILES, -1)
        return self.classifier(features.flatten(1)), features

    def training_step(self, views, labels, progress):
        tiles, target = puzzle(views[0], self.permutations, self.generator)
        shuffled = normalise_tiles(tiles)
        logits, features = self.logits(shuffled)
        loss = F.cross_entropy(logits, target)
        accuracy = (logits.detach().argmax(dim=1) == target).float().mean()
        return StepOutput(loss=loss, z1=features.mean(dim=1), extras={"train_accuracy": accuracy})


def puzzle(x: torch.Tensor, permutations: torch.Tensor, generator) -> tuple[torch.Tensor, torch.Tensor]:
    """The step's draw on the normalised views ``x``: (the 9 tiles in their shuffled order
    (N, 9, C, t, t), before the per-tile normalisation; the permutation index of each (N,))."""
    return jigsaw_batch(x, permutations, generator=generator)


@torch.no_grad()
def preview_inputs(views, cfg, generator=None) -> list:
    """What the network receives: the step's ``puzzle`` of the first view, its 9 tiles in their
    shuffled order as a 3 x 3 mosaic with gaps, in [0, 1] (before the per-tile normalisation,
    which is not displayable); each image tagged with its permutation index."""
    perms = permutation_set(cfg.method.num_permutations, PERMUTATION_SEED)
    tiles, target = puzzle(views[0], perms, generator)
    return [(f"tiles in shuffled order (under each: its permutation, of {len(perms)}; before per-tile normalisation)",
             mosaic(tiles_for_display(tiles, cfg), 3, 3, gap=1), [f"#{int(t)}" for t in target])]
