"""Relative patch location (Doersch, Gupta & Efros 2015, "Unsupervised visual representation
learning by context prediction").

From the first view of each image, ``backend.pretext.patches.relative_patches`` cuts the centre
tile of a jittered 3 x 3 grid and one of its 8 neighbours (uniformly chosen); both go through the
shared backbone (one batch of 2N tiles), their features are concatenated and a small MLP (the
paper's fc7/fc8 pair: Linear-BN-ReLU of width 512, then 8 logits) classifies where the neighbour
lies. Cross entropy.

Choices for 32-96 px images: the paper cuts 96 px patches with 48 px gaps from ImageNet images;
here the tile layout is the jigsaw one of ``backend.pretext.patches`` (at 32 px: 8 px tiles in
10 px cells, 0-4 px gaps, a random grid offset), so the tiles are tiny and the gaps small. The
paper's counters to chromatic aberration (colour dropping / projection) are left to the
augmentation: the preset's colour jitter and greying. As in the paper, the tiles come from the
whole image (the preset's crop scale is 1): zoomed-in random crops leave an 8 px tile a few pixels
of the photo and cost the whole-image kNN most of what the task teaches (numbers in the preset's
header). kNN and the metrics use the backbone on whole images, as for every method.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..models.heads import mlp_head
from ..pretext.patches import NEIGHBOURS, relative_patches
from . import register
from ._pretext import PretextMethod, denormalise
from .base import StepOutput
from .spec import PRETEXT, MethodSpec

HIDDEN = 512

SPEC = MethodSpec(
    paper="Doersch, Gupta & Efros 2015, Unsupervised Visual Representation Learning by Context Prediction",
    name="relative_location", label="Relative patch location", family=PRETEXT,
    help="Predict which of the 8 neighbour positions a tile was cut from, relative to the centre tile.",
)


@register(SPEC)
class RelativeLocation(PretextMethod):
    def __init__(self, cfg):
        super().__init__(cfg)
        self.classifier = mlp_head(2 * self.feature_dim, HIDDEN, len(NEIGHBOURS), 2)

    def logits(self, centre: torch.Tensor, neighbour: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(8-way logits (N, 8), centre features (N, F)) of a batch of tile pairs."""
        features = self.backbone(torch.cat([centre, neighbour]))
        f_centre, f_neighbour = features.chunk(2)
        return self.classifier(torch.cat([f_centre, f_neighbour], dim=1)), f_centre

    def training_step(self, views, labels, progress):
        pairs = relative_patches(views[0], generator=self.generator)
        logits, f_centre = self.logits(pairs.centre, pairs.neighbour)
        loss = F.cross_entropy(logits, pairs.label)
        accuracy = (logits.detach().argmax(dim=1) == pairs.label).float().mean()
        return StepOutput(loss=loss, z1=f_centre, extras={"train_accuracy": accuracy})


@torch.no_grad()
def preview_inputs(views, cfg, generator=None) -> list:
    """What the network receives: the step's ``relative_patches`` of the first view, the centre
    tile and the neighbour tile (tagged with where it lies), in [0, 1]."""
    pairs = relative_patches(views[0], generator=generator)
    where = ("top-left", "top", "top-right", "left", "right", "bottom-left", "bottom", "bottom-right")
    return [("centre tile", denormalise(pairs.centre, cfg)),
            ("neighbour tile (its position is the label)", denormalise(pairs.neighbour, cfg),
             [where[int(k)] for k in pairs.label])]
