"""CMC (Tian et al. 2019, "Contrastive multiview coding"), the two-view L / ab form.

An image in CIE Lab is two views of the same scene: its lightness L and its colour ab. Each view
has its own encoder and projection head; L of image i is contrasted against ab of every image of
the batch and the other way round (cross-view InfoNCE, both directions, temperature t: the
in-batch form of the paper's memory-bank loss, which suits CPU-size runs). The views are split
from the same augmented crop (``views[0]``), as in the paper; the engine's views are mean/std
normalised, so the normalisation is undone before ``rgb_to_lab``.

Encoder inputs (any backbone family, unchanged stems): L (``split_lab``: L / 50 - 1 in [-1, 1])
replicated to 3 channels; ab / 110 (roughly [-1, 1]) with a third, all-zero channel. Both
encoders are ``build_backbone`` of ``model.backbone`` (the paper halves a network's width per
view; here each is the full configured backbone, so CMC has twice a single-encoder method's
parameters). ``self.backbone`` is :class:`LabEncoders`, which takes the normalised RGB image,
converts it and returns the concatenated features (2 F), as the paper evaluates; so kNN, the
probe metrics and feature extraction work unchanged (CNN feature-map inspection and the
safetensors export, which rebuild a plain backbone, do not apply to it).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..distributed import gather_with_grad
from ..models.backbones import build_backbone
from ..pretext.lab import AB_SCALE, L_SCALE, rgb_to_lab, split_lab
from . import register
from ._pretext import ab_as_colour, channel_stats
from .base import Method, StepOutput
from .spec import CONTRASTIVE, MethodSpec, temperature


SPEC = MethodSpec(
    paper="Tian, Krishnan & Isola 2019, Contrastive Multiview Coding",
    name="cmc", label="CMC (L / ab)", family=CONTRASTIVE,
    help="Lightness and colour as two views with two encoders, cross-view InfoNCE.",
    params={"temperature": temperature(0.07)},
)


class LabEncoders(nn.Module):
    """Normalised RGB (N, 3, H, W) -> [L-encoder features, ab-encoder features] (N, 2 F)."""

    def __init__(self, l_encoder: nn.Module, ab_encoder: nn.Module, mean, std):
        super().__init__()
        self.l_encoder, self.ab_encoder = l_encoder, ab_encoder
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

    def lab_views(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The two encoder inputs: L replicated to 3 channels, ab / 110 with a zero channel."""
        return lab_views(x, self.mean, self.std)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(L features, ab features), each (N, F)."""
        l_in, ab_in = self.lab_views(x)
        return self.l_encoder(l_in), self.ab_encoder(ab_in)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat(self.encode(x), dim=1)


def lab_views(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The two encoder inputs of normalised RGB ``x`` (``mean``/``std`` (1, 3, 1, 1) undo the
    normalisation): L / 50 - 1 replicated to 3 channels, ab / 110 with a zero third channel."""
    rgb = x.float() * std.to(x.device) + mean.to(x.device)
    l_norm, ab = split_lab(rgb_to_lab(rgb))
    ab = ab / AB_SCALE
    l_in = l_norm.expand(-1, 3, -1, -1).contiguous(memory_format=_memory_format(x))
    ab_in = torch.cat([ab, torch.zeros_like(ab[:, :1])], dim=1).contiguous(memory_format=_memory_format(x))
    return l_in.to(x.dtype), ab_in.to(x.dtype)


def _memory_format(x: torch.Tensor):
    return torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) and not \
        x.is_contiguous() else torch.contiguous_format


def cross_view_info_nce(za: torch.Tensor, zb: torch.Tensor, temperature: float) -> torch.Tensor:
    """Mean of the two directions' in-batch InfoNCE: view a's row i against every row of view b
    (positive: row i), and b against a."""
    za, zb = F.normalize(za, dim=1), F.normalize(zb, dim=1)
    logits = za @ zb.T / temperature
    target = torch.arange(za.shape[0], device=za.device)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


@register(SPEC)
class CMC(Method):
    def __init__(self, cfg):
        super().__init__(cfg)
        ab_encoder, dim = build_backbone(cfg.model.backbone, cfg.data.image_size, vit_pool=cfg.model.vit_pool)
        self.view_dim = dim
        self.backbone = LabEncoders(self.backbone, ab_encoder, cfg.augment.mean, cfg.augment.std)
        self.feature_dim = 2 * dim
        self.projector = self.projector_head(dim)      # L head
        self.ab_projector = self.projector_head(dim)   # ab head

    def project(self, features):
        """Both heads on their halves of the features, concatenated."""
        l_feat, ab_feat = features.split(self.view_dim, dim=1)
        return torch.cat([self.projector(l_feat), self.ab_projector(ab_feat)], dim=1)

    def training_step(self, views, labels, progress):
        l_feat, ab_feat = self.backbone.encode(views[0])
        z_l, z_ab = self.projector(l_feat), self.ab_projector(ab_feat)
        loss = cross_view_info_nce(gather_with_grad(z_l), gather_with_grad(z_ab), self.cfg.method.temperature)
        return StepOutput(loss=loss, z1=z_l, z2=z_ab)


@torch.no_grad()
def preview_inputs(views, cfg, generator=None) -> list:
    """What the two encoders receive, from ``lab_views`` of the first view: L (shown as grey)
    and ab (shown as colours at a fixed L = 50), in [0, 1]."""
    mean, std = channel_stats(cfg)
    l_in, ab_in = lab_views(views[0], mean, std)
    grey = ((l_in.float() + 1.0) / 2.0).clamp(0.0, 1.0)
    return [("L view (L encoder input)", grey),
            ("ab view (ab encoder input; colours shown at fixed L = 50)",
             ab_as_colour(ab_in[:, :2].float() * AB_SCALE, L_SCALE))]
