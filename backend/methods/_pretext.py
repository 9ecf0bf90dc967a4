"""Machinery the pretext-task methods share (relative location, jigsaw, colorization, inpainting,
CPC, MAE): a base class with a seeded CPU generator kept in checkpoints, undoing the views'
normalisation, spatial features of any backbone, and the mosaics of the input previews.

Private module (leading underscore): the method catalogue does not read it for a SPEC.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..models.backbones import unwrap_backbone, feature_maps
from ..pretext.lab import lab_to_rgb
from ..models.vit import ViTBackbone
from .base import Method

# Offset of each method's generator seed from runtime.seed (the augmentation uses the seed itself).
GENERATOR_SEED_OFFSET = 11


def channel_stats(cfg, device=None, dtype=torch.float32) -> tuple[Tensor, Tensor]:
    """The views' normalisation mean and std as (1, 3, 1, 1) tensors."""
    mean = torch.tensor(cfg.augment.mean, device=device, dtype=dtype).view(1, 3, 1, 1)
    std = torch.tensor(cfg.augment.std, device=device, dtype=dtype).view(1, 3, 1, 1)
    return mean, std


def denormalise(x: Tensor, cfg) -> Tensor:
    """Normalised views back to RGB in [0, 1] (clamped), float32."""
    mean, std = channel_stats(cfg, x.device)
    return (x.float() * std + mean).clamp(0.0, 1.0)


def normalise(x01: Tensor, cfg) -> Tensor:
    """RGB in [0, 1] -> the views' normalisation."""
    mean, std = channel_stats(cfg, x01.device, x01.dtype)
    return (x01 - mean) / std


def spatial_features(backbone: nn.Module, x: Tensor) -> Tensor:
    """A feature map (N, C, h, w) of any backbone: the last conv map of a CNN, the final patch
    tokens of a ViT laid out on their grid (CLS dropped)."""
    model = unwrap_backbone(backbone)
    if isinstance(model, ViTBackbone):
        tokens = model.forward_tokens(x)[:, 1:]
        grid_h, grid_w = x.shape[-2] // model.patch_size, x.shape[-1] // model.patch_size
        return tokens.transpose(1, 2).reshape(x.shape[0], -1, grid_h, grid_w)
    return feature_maps(backbone, x)


def feature_map_shape(backbone: nn.Module, image_size: int) -> tuple[int, int, int]:
    """(channels, height, width) of :func:`spatial_features` for square ``image_size`` inputs, read
    from one blank image with the backbone in eval mode (its batch-norm statistics untouched)."""
    was = backbone.training
    backbone.eval()
    try:
        with torch.no_grad():
            return tuple(spatial_features(backbone, torch.zeros(1, 3, image_size, image_size)).shape[1:])
    finally:
        backbone.train(was)


def conv_bn_relu(in_ch: int, out_ch: int) -> nn.Sequential:
    """3 x 3 convolution, batch norm, ReLU (the decoders' unit)."""
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False), nn.BatchNorm2d(out_ch),
                         nn.ReLU(inplace=True))


class PretextMethod(Method):
    """A method whose pretext task draws its own randomness (tile jitter, permutations, masks)
    from a CPU generator seeded by ``runtime.seed``; the generator's state is checkpointed
    (``state_extras``) so a resumed run draws what the uninterrupted one would. The projector is
    the identity unless a subclass sets one: ``embed`` then returns the backbone features twice."""

    def __init__(self, cfg):
        super().__init__(cfg)
        self.projector = nn.Identity()
        self._generator = torch.Generator().manual_seed(cfg.runtime.seed + GENERATOR_SEED_OFFSET)

    @property
    def generator(self) -> torch.Generator:
        """The CPU generator of the pretext task's random draws."""
        return self._generator

    def state_extras(self) -> dict:
        """Non-module state the checkpoint must hold for exact resume."""
        return {"pretext_rng": self._generator.get_state()}

    def load_state_extras(self, extras: dict) -> None:
        """Restore what ``state_extras`` saved."""
        if "pretext_rng" in extras:
            self._generator.set_state(extras["pretext_rng"])


# ---- previews ---------------------------------------------------------------------------------
def mosaic(tiles: Tensor, rows: int, cols: int, gap: int = 2, fill: float = 1.0) -> Tensor:
    """Tiles (N, rows*cols, C, t, t) in row-major order laid out on a grid with ``gap`` pixels of
    ``fill`` between them: (N, C, rows*t + (rows-1)*gap, cols*t + (cols-1)*gap)."""
    n, k, c, th, tw = tiles.shape
    if k != rows * cols:
        raise ValueError(f"{k} tiles do not fill a {rows} x {cols} grid")
    out = torch.full((n, c, rows * th + (rows - 1) * gap, cols * tw + (cols - 1) * gap), fill,
                     dtype=tiles.dtype, device=tiles.device)
    for i in range(k):
        r, q = divmod(i, cols)
        out[:, :, r * (th + gap):r * (th + gap) + th, q * (tw + gap):q * (tw + gap) + tw] = tiles[:, i]
    return out


def tiles_for_display(tiles: Tensor, cfg) -> Tensor:
    """Tiles (N, K, 3, t, t) cut from normalised views, back to RGB in [0, 1]."""
    return denormalise(tiles.flatten(0, 1), cfg).view(tiles.shape)


def ab_as_colour(ab: Tensor, lightness: float = 50.0) -> Tensor:
    """Raw Lab ab (N, 2, H, W) as RGB in [0, 1] at the fixed ``lightness`` (L in 0..100), so the
    colour alone is seen (out-of-gamut colours are clipped)."""
    lab = torch.cat([torch.full_like(ab[:, :1], float(lightness)), ab.float()], dim=1)
    return lab_to_rgb(lab).clamp(0.0, 1.0)


def upsample_to(x: Tensor, size: int) -> Tensor:
    """Nearest-neighbour resize of (N, C, h, w) previews to ``size`` px a side (for display)."""
    return F.interpolate(x, size=(size, size), mode="nearest")
