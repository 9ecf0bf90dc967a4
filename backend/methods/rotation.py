"""RotNet (Gidaris, Singh & Komodakis 2018, "Unsupervised representation learning by predicting
image rotations").

Each image of the first view is shown at 0, 90, 180 and 270 degrees (``torch.rot90``, all four in
the same batch as in the paper) and a linear 4-way classifier on the backbone features predicts
which; cross entropy. Training images are square, so every rotation has the input's shape. The
classifier machinery (identity projector, metrics on backbone features) is ``Supervised``'s.
"""

from __future__ import annotations

import torch

from . import register
from .spec import PRETEXT, MethodSpec
from .supervised import Supervised

ROTATIONS = 4

SPEC = MethodSpec(
    name="rotation", label="RotNet (rotation)", family=PRETEXT,
    paper="Gidaris et al. 2018, Unsupervised Representation Learning by Predicting Image Rotations",
    help="A linear classifier predicts which of four rotations an image was shown at.",
)


@register(SPEC)
class Rotation(Supervised):
    def num_outputs(self) -> int:
        return ROTATIONS

    def pretext(self, views, labels):
        """(the four rotations of view 1 stacked, their rotation index k: k x 90 degrees)."""
        x = views[0]
        images = torch.cat([torch.rot90(x, k, dims=(2, 3)) for k in range(ROTATIONS)])
        targets = torch.arange(ROTATIONS, device=x.device).repeat_interleave(x.shape[0])
        return images, targets
