"""Context encoder (Pathak et al. 2016, "Context encoders: feature learning by inpainting"), its
reconstruction objective only.

Regions of the first view are removed (``backend.pretext.masks``: the central block of half the
side, a quarter of the area, or random square blocks covering up to a quarter; ``mask`` param) and
filled with 0, which in the normalised view is the dataset mean colour, as the paper fills with
the mean. The encoder (the backbone) sees the masked image; a decoder rebuilds the whole image
from its pooled features through a linear layer and upsampling convolutions (the paper's
channel-wise fully connected bottleneck followed by up-convolutions), and the loss is
``backend.pretext.reconstruction.inpainting_loss``: the mean squared error of the normalised
pixels over the removed region only.

Left out: the adversarial term (the paper adds a discriminator with weight 0.001 for sharper
fills; it improves the picture more than the features, and a GAN is beyond this workbench's
per-step budget) and the 10x weighted overlap border of the random-region variant. Choices for
32-96 px: the decoder starts from a ``H/8`` grid of 64 channels and doubles three times (32 px:
4 -> 8 -> 16 -> 32), so it works from pooled features of any backbone, CNN or ViT.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..pretext.masks import central_block_mask, random_block_mask
from ..pretext.reconstruction import inpainting_loss
from . import register
from ._pretext import PretextMethod, conv_bn_relu, denormalise
from .base import StepOutput
from .spec import PRETEXT, MethodSpec, Param

DECODER_WIDTH = 64
UPSAMPLINGS = 3
MASKS = ("central", "random")

SPEC = MethodSpec(
    paper="Pathak et al. 2016, Context Encoders: Feature Learning by Inpainting",
    name="inpainting", label="Context encoder (inpainting)", family=PRETEXT,
    help="Reconstruct the removed region of an image from the rest (L2 on the removed pixels).",
    params={"mask": Param("central", "Removed region: the central block (a quarter of the area) or "
                                     "random square blocks covering up to a quarter.", choices=("central", "random"))},
)


def make_mask(n: int, h: int, w: int, kind: str, generator=None, device=None) -> torch.Tensor:
    """(N, 1, H, W) bool, True where pixels are removed, for mask ``kind`` ('central' or 'random')."""
    if kind == "central":
        return central_block_mask(n, h, w, device=device)
    if kind == "random":
        return random_block_mask(n, h, w, generator=generator, device=device)
    raise ValueError(f"method.mask must be one of {', '.join(MASKS)}, got {kind!r}")


def masked_input(x: torch.Tensor, kind: str, generator=None) -> tuple[torch.Tensor, torch.Tensor]:
    """The step's draw on normalised views ``x``: (``x`` with the removed region set to 0, the
    mean colour; the mask (N, 1, H, W), True where removed)."""
    n, _, h, w = x.shape
    mask = make_mask(n, h, w, kind, generator, x.device)
    return x.masked_fill(mask, 0.0), mask


class Decoder(nn.Module):
    """Pooled features (N, F) -> image (N, 3, H, W): Linear to a 64 x H/8 x W/8 grid, then three
    (x2 nearest upsampling, 3 x 3 conv-BN-ReLU) stages and a 3 x 3 conv to RGB."""

    def __init__(self, in_dim: int, image_size: int):
        super().__init__()
        self.start = max(1, image_size // 2 ** UPSAMPLINGS)
        self.image_size = image_size
        self.fc = nn.Sequential(nn.Linear(in_dim, DECODER_WIDTH * self.start ** 2), nn.ReLU(inplace=True))
        self.up = nn.Sequential(*[nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                                                conv_bn_relu(DECODER_WIDTH, DECODER_WIDTH))
                                  for _ in range(UPSAMPLINGS)])
        self.out = nn.Conv2d(DECODER_WIDTH, 3, 3, padding=1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """The reconstructed (normalised) image."""
        x = self.fc(features).view(-1, DECODER_WIDTH, self.start, self.start)
        x = self.up(x)
        if x.shape[-1] != self.image_size:
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False)
        return self.out(x)


@register(SPEC)
class Inpainting(PretextMethod):
    def __init__(self, cfg):
        super().__init__(cfg)
        make_mask(1, 8, 8, cfg.method.mask)  # a bad mask name fails at construction
        self.decoder = Decoder(self.feature_dim, cfg.data.image_size)

    def masked_input(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(the view with the removed region set to 0 (the mean colour), the mask (N, 1, H, W))."""
        return masked_input(x, self.cfg.method.mask, self.generator)

    def training_step(self, views, labels, progress):
        x = views[0]
        masked, mask = self.masked_input(x)
        features = self.backbone(masked)
        loss = inpainting_loss(self.decoder(features), x, mask)
        return StepOutput(loss=loss, z1=features)


@torch.no_grad()
def preview_inputs(views, cfg, generator=None) -> list:
    """What the network receives: the step's ``masked_input`` of the first view, the removed
    region in the mean colour, and the view it has to complete, in [0, 1]."""
    masked, mask = masked_input(views[0], cfg.method.mask, generator)
    share = round(100 * float(mask.float().mean()))
    return [(f"masked input ({cfg.method.mask} region, {share} % of the pixels, in the mean colour)",
             denormalise(masked, cfg)),
            ("target (loss on the removed pixels)", denormalise(views[0], cfg))]
