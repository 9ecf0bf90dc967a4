"""Masked autoencoders (He et al. 2022, "Masked autoencoders are scalable vision learners").

The first view is split into the ViT's patches and ``mask_ratio`` (75 %) of them are hidden per
sample at random (``backend.pretext.masks.random_patch_mask``). The encoder - the ViT backbone,
``ViTBackbone.forward_tokens`` - sees the CLS token and the visible patches only. A light decoder
(Linear to width 128, learned mask tokens at the hidden positions, learned position embeddings,
2 transformer blocks of width 128 with 4 heads, LayerNorm, a linear map to the patch's pixels)
reconstructs every patch, and ``backend.pretext.reconstruction.mae_loss`` scores the masked ones
against their per-patch normalised pixels (``norm_pix_loss``).

Features for kNN and the metrics are the backbone's own output on the full, unmasked image, read
as ``model.vit_pool`` says: the preset reads the mean patch token (the paper's global pooling for
fine-tuning, sec. A.1), because no MAE loss trains the CLS token - it only reaches the decoder as
one more token - and in a short run its kNN stayed below the random-init encoder's (-0.006 after
32 epochs on 16 px shapes; the mean patch token +0.018, and +0.031..+0.061 after 64 epochs with
MAE's optimiser: weight decay 0.05, beta2 0.95, warm-up). ``vit_pool = "cls"`` reads the CLS
token (the paper's linear probe). The step's ``z1`` is the same read-out of the visible tokens.

Choices for 32-96 px: decoder width 128 and depth 2 (the paper: 512 and 8 for ViT-L at 224 px),
learned decoder position embeddings where the paper fixes sine-cosine ones; targets are the
normalised view's pixels (the paper's input normalisation too). ViT backbones only.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models.vision_transformer import EncoderBlock

from ..models.backbones import unwrap_backbone
from ..pretext.masks import random_patch_mask
from ..pretext.patches import patchify
from ..pretext.reconstruction import mae_loss
from . import register
from ._pretext import PretextMethod, denormalise
from .base import StepOutput
from .spec import MASKED_MODELLING, MethodSpec, Param

DECODER_WIDTH = 128
DECODER_DEPTH = 2
DECODER_HEADS = 4

SPEC = MethodSpec(
    paper="He et al. 2022, Masked Autoencoders Are Scalable Vision Learners",
    name="mae", label="MAE", family=MASKED_MODELLING, backbones=("vit",),
    help="Hide most patches; the ViT encodes the visible ones and a light decoder rebuilds the hidden pixels.",
    params={"mask_ratio": Param(0.75, "Share of the patches hidden from the encoder.", gt=0.0, lt=1.0),
            "norm_pix_loss": Param(True, "Reconstruct per-patch normalised pixels (MAE's best setting).")},
)


class MAEDecoder(nn.Module):
    """Encoded (CLS + visible) tokens -> pixel predictions (N, L, p*p*3) for every patch."""

    def __init__(self, encoder_dim: int, num_patches: int, patch_size: int):
        super().__init__()
        self.embed = nn.Linear(encoder_dim, DECODER_WIDTH)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, DECODER_WIDTH))
        self.pos_embedding = nn.Parameter(torch.empty(1, 1 + num_patches, DECODER_WIDTH).normal_(std=0.02))
        nn.init.normal_(self.mask_token, std=0.02)
        self.blocks = nn.Sequential(*[EncoderBlock(DECODER_HEADS, DECODER_WIDTH, 4 * DECODER_WIDTH, 0.0, 0.0)
                                      for _ in range(DECODER_DEPTH)])
        self.norm = nn.LayerNorm(DECODER_WIDTH, eps=1e-6)
        self.pred = nn.Linear(DECODER_WIDTH, patch_size * patch_size * 3)

    def forward(self, tokens: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
        """``tokens`` (N, 1 + K, D) from the encoder, ``ids_restore`` (N, L) -> (N, L, p*p*3)."""
        x = self.embed(tokens)
        n, length = ids_restore.shape
        visible = x[:, 1:]
        masks = self.mask_token.to(x.dtype).expand(n, length - visible.shape[1], -1)
        patches = torch.cat([visible, masks], dim=1)             # in shuffled order: kept first
        index = ids_restore.to(x.device)[..., None].expand(-1, -1, x.shape[-1])
        patches = patches.gather(1, index)                       # back to row-major order
        x = torch.cat([x[:, :1], patches], dim=1) + self.pos_embedding.to(x.dtype)
        return self.pred(self.norm(self.blocks(x)))[:, 1:]


@register(SPEC)
class MAE(PretextMethod):
    def __init__(self, cfg):
        super().__init__(cfg)
        vit = unwrap_backbone(self.backbone)
        self.patch_size = vit.patch_size
        self.num_patches = vit.grid_size ** 2
        self.decoder = MAEDecoder(self.feature_dim, self.num_patches, self.patch_size)

    def training_step(self, views, labels, progress):
        x = views[0]
        if x.shape[-1] != x.shape[-2] or x.shape[-1] // self.patch_size != unwrap_backbone(self.backbone).grid_size:
            raise ValueError(f"MAE trains on the global views of {self.cfg.data.image_size} px, got "
                             f"{tuple(x.shape[-2:])}")
        masking = draw_mask(x, self.patch_size, self.cfg.method.mask_ratio, self.generator)
        tokens = unwrap_backbone(self.backbone).forward_tokens(x, masking.ids_keep)
        pred = self.decoder(tokens, masking.ids_restore)
        loss = mae_loss(pred, patchify(x, self.patch_size), masking.mask, self.cfg.method.norm_pix_loss)
        return StepOutput(loss=loss, z1=unwrap_backbone(self.backbone).pooled(tokens), extras={})


def draw_mask(x: torch.Tensor, patch: int, ratio: float, generator):
    """The step's draw: a ``PatchMask`` hiding ``ratio`` of the ``patch``-px patches of each of the
    views ``x`` (N, C, H, W), row-major over the patch grid."""
    grid = (x.shape[-2] // patch) * (x.shape[-1] // patch)
    return random_patch_mask(x.shape[0], grid, ratio, generator=generator, device=x.device)


@torch.no_grad()
def preview_inputs(views, cfg, generator=None) -> list:
    """What the encoder receives: the first view with the patches of the step's ``draw_mask``
    hidden (mid grey; the encoder sees only the others), beside the full view the decoder
    rebuilds, in [0, 1]."""
    from ..models.vit import vit_patch_size

    x = views[0]
    n, _, h, w = x.shape
    patch = vit_patch_size(cfg.data.image_size)
    masking = draw_mask(x, patch, cfg.method.mask_ratio, generator)
    gh, gw = h // patch, w // patch
    pixels = masking.mask.view(n, 1, gh, gw).repeat_interleave(patch, 2).repeat_interleave(patch, 3)
    rgb = denormalise(x, cfg)
    masked = rgb * (1 - pixels) + 0.5 * pixels
    hidden = int(masking.mask[0].sum())
    share = round(100 * cfg.method.mask_ratio)
    return [(f"masked image ({share} % of patches hidden: {hidden} of {gh * gw}, {patch} px each)", masked),
            ("full view (the decoder rebuilds the hidden patches)", rgb)]
