"""Colorization (Zhang, Isola & Efros 2016, "Colorful image colorization"), as a pretext task.

The first view is taken back to RGB in [0, 1] and converted to CIE Lab (``backend.pretext.lab``).
The network sees the L channel only, as a grey image: ``L / 100`` replicated to 3 channels and
normalised like every view (so the backbone keeps its 3-channel stem and stays usable on colour
images; a grey-scaled view lies in the same input space). A small conv decoder on the backbone's
spatial features (a CNN's last feature map; a ViT's final patch tokens on their grid) predicts,
at a quarter of the input resolution (the paper's 56 of 224), a distribution over the 262
in-gamut ab bins of ``backend.pretext.colorization``; the loss is the paper's rebalanced
multinomial cross entropy against the soft-encoded ab of the 4 x 4 average-pooled image.

Rebalancing: the method cannot see the dataset at construction, so it counts the nearest ab bin
of every training pixel over the first ``REBALANCE_STEPS`` steps (buffers, so checkpoints and
resume keep them; summed over ranks under torchrun) and derives the weights from the counts so far
(lam = 0.5, sigma = 5, as the paper); after that the weights stay fixed. The counts come from the
augmented training views (random crops of the training images), not from the raw images.

Evaluation: kNN, the linear probe, the embeddings and the export feed the backbone the same
grey input (``input_adapter``: :class:`GreyInput`, RGB -> L / 100 replicated -> normalised), so
the features are those of the network as trained. Fine-tuning and the inspect views' feature maps
and attention still feed the backbone the colour image.

Choices for 32-96 px: decoder of two 3 x 3 conv-BN-ReLU layers of width 128 (the paper's
network is a full VGG-style encoder-decoder); the paper's classification layer predicts at
1/4 resolution too. Decoding to colours (``annealed_mean``) is only for display.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..distributed import all_reduce_sum
from ..pretext.colorization import ab_bins, bin_counts, colorization_loss, rebalance_weights, soft_encode
from ..pretext.lab import rgb_to_lab
from . import register
from ._pretext import (PretextMethod, ab_as_colour, conv_bn_relu, denormalise, feature_map_shape, normalise,
                       spatial_features)
from .base import StepOutput
from .spec import PRETEXT, MethodSpec

DECODER_WIDTH = 128
OUTPUT_STRIDE = 4          # logits at 1/4 of the input resolution
REBALANCE_STEPS = 100      # steps whose pixels are counted for the rebalancing weights
REBALANCE_LAMBDA = 0.5

SPEC = MethodSpec(
    paper="Zhang, Isola & Efros 2016, Colorful Image Colorization",
    name="colorization", label="Colorization", family=PRETEXT,
    help="From the L channel, predict each pixel's colour as a distribution over quantised ab bins.",
)


def grey_input(x01: torch.Tensor, cfg) -> tuple[torch.Tensor, torch.Tensor]:
    """(the network input: L / 100 replicated to 3 channels and normalised, ab (N, 2, H, W))
    of RGB images in [0, 1]."""
    lab = rgb_to_lab(x01)
    return normalise((lab[:, :1] / 100.0).expand(-1, 3, -1, -1), cfg), lab[:, 1:]


class GreyInput(nn.Module):
    """Normalised RGB (N, 3, H, W) -> the grey network input of ``grey_input`` (the training
    step's): undo the normalisation, L / 100 replicated to 3 channels, normalise again. Its
    mean/std buffers are not saved (the config holds them), so checkpoints and exports keep the
    backbone's keys."""

    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rgb = (x.float() * self.std + self.mean).clamp(0.0, 1.0)
        grey = (rgb_to_lab(rgb)[:, :1] / 100.0).expand(-1, 3, -1, -1)
        return ((grey - self.mean) / self.std).to(x.dtype)


@register(SPEC)
class Colorization(PretextMethod):
    def __init__(self, cfg):
        super().__init__(cfg)
        bins = ab_bins()
        self.register_buffer("bins", bins, persistent=False)
        self.register_buffer("ab_counts", torch.zeros(bins.shape[0], dtype=torch.float64))
        self.register_buffer("counted_steps", torch.zeros((), dtype=torch.long))
        self.register_buffer("class_weights", torch.ones(bins.shape[0]))
        channels = feature_map_shape(self.backbone, cfg.data.image_size)[0]
        self.decoder_in = conv_bn_relu(channels, DECODER_WIDTH)
        self.decoder = nn.Sequential(conv_bn_relu(DECODER_WIDTH, DECODER_WIDTH),
                                     nn.Conv2d(DECODER_WIDTH, bins.shape[0], 1))

    def predict(self, grey: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(ab-bin logits (N, Q, H/4, W/4), spatial features (N, C, h, w)) of the network input
        ``grey`` (N, 3, H, W)."""
        h, w = grey.shape[-2] // OUTPUT_STRIDE, grey.shape[-1] // OUTPUT_STRIDE
        maps = spatial_features(self.backbone, grey)
        x = F.interpolate(self.decoder_in(maps), size=(h, w), mode="bilinear", align_corners=False)
        return self.decoder(x), maps

    @torch.no_grad()
    def update_weights(self, ab: torch.Tensor) -> None:
        """Count the pixels' nearest bins during the first REBALANCE_STEPS steps and refresh the
        rebalancing weights from the counts so far."""
        if int(self.counted_steps) >= REBALANCE_STEPS:
            return
        self.ab_counts += all_reduce_sum(bin_counts(ab.float(), self.bins))
        self.counted_steps += 1
        weights = rebalance_weights(self.ab_counts, self.bins, lam=REBALANCE_LAMBDA)
        self.class_weights.copy_(weights.to(self.class_weights))

    def training_step(self, views, labels, progress):
        grey, ab = grey_input(denormalise(views[0], self.cfg), self.cfg)
        logits, maps = self.predict(grey)
        ab_small = ab_target(ab)
        if self.training:
            self.update_weights(ab_small)
        indices, weights = soft_encode(ab_small, self.bins)
        loss = colorization_loss(logits, indices, weights, self.class_weights)
        accuracy = (logits.detach().argmax(dim=1) == indices[:, 0]).float().mean()
        # z1: the spatially averaged feature map (a CNN's pooled features; for a ViT the mean patch token).
        return StepOutput(loss=loss, z1=maps.mean(dim=(2, 3)), extras={"bin_accuracy": accuracy})

    @classmethod
    def input_adapter(cls, cfg):
        """kNN, the probe, the embeddings and the export see what training feeds the backbone:
        the grey (L channel) version of each image."""
        return GreyInput(cfg.augment.mean, cfg.augment.std)


def ab_target(ab: torch.Tensor) -> torch.Tensor:
    """The ab the loss scores (N, 2, H/4, W/4): ``ab`` average-pooled to the logits' resolution."""
    return F.adaptive_avg_pool2d(ab, (ab.shape[-2] // OUTPUT_STRIDE, ab.shape[-1] // OUTPUT_STRIDE))


@torch.no_grad()
def preview_inputs(views, cfg, generator=None) -> list:
    """What the network receives and what it must predict, from the step's ``grey_input`` of the
    first view: the L channel as a grey image, and the pooled ab target as colours at a fixed
    L = 50 (ab has no lightness of its own), both in [0, 1]."""
    grey, ab = grey_input(denormalise(views[0], cfg), cfg)
    small = ab_target(ab)
    shown = denormalise(grey, cfg)[:, :1].expand(-1, 3, -1, -1).contiguous()  # one grey, no rounding tint
    return [("L channel (network input)", shown),
            (f"ab target, {small.shape[-1]} x {small.shape[-2]} as the loss pools it (colours shown at fixed L = 50; "
             f"grey = no colour)",
             ab_as_colour(small, 50.0))]
