"""Where the encoder looks: ViT attention maps (DINO-style) or CNN feature-norm maps.

For a ViT backbone the maps are the last block's CLS-to-patch attention of every head
(``ViTBackbone.last_attention``), as shown in the DINO paper (Caron et al. 2021, fig. 1 and 3).
A CNN has no attention; there the map is the L2 norm over channels of the last feature map,
normalised to sum to 1 (``kind="feature_norm"``), which shows where activations are strong.

Upsampling from the patch grid to the image is ``nearest`` by default (every patch a flat block,
as in DINO's visualisation code; honest about the resolution) or ``bilinear`` (smoother, for
overlays). Upsampled maps are rescaled to sum to 1 over the image's pixels, so the grid and the
pixel maps hold the same total mass.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import DataError

UPSAMPLE_MODES = ("nearest", "bilinear")
_CHUNK = 64


@dataclass
class AttentionResult:
    """Maps of N images (all float32 CPU tensors).

    ``grid`` (N, heads, h, w): per-patch maps, each summing to 1. ``per_head`` (N, heads, H, W):
    the same upsampled to the image size, each summing to 1 over pixels; ``mean`` (N, H, W): their
    mean over heads. ``images`` (N, 3, H, W): the inputs in [0, 1] as the model saw them (resized to
    the run's image size), for overlays. ``cell``: image pixels per grid cell along a side.
    ``kind``: ``"attention"`` (ViT) or ``"feature_norm"`` (CNN, one pseudo-head)."""

    per_head: torch.Tensor
    mean: torch.Tensor
    grid: torch.Tensor
    images: torch.Tensor
    kind: str
    cell: int
    note: str = ""

    @property
    def num_heads(self) -> int:
        return int(self.grid.shape[1])


def _images01(images, size: int) -> torch.Tensor:
    """uint8 or float [0, 1] images, (3, H, W) or (N, 3, H, W), numpy or torch -> float (N, 3, S, S)."""
    x = torch.as_tensor(np.asarray(images)) if not isinstance(images, torch.Tensor) else images
    if x.ndim == 3:
        x = x.unsqueeze(0)
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"images must be (N, 3, H, W) or (3, H, W), got shape {tuple(x.shape)}")
    x = x.float().div(255.0) if x.dtype == torch.uint8 else x.float().clamp(0.0, 1.0)
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                          antialias=True).clamp_(0.0, 1.0)
    return x.cpu()


def _normalise_maps(m: torch.Tensor) -> torch.Tensor:
    """Each (h, w) map divided by its sum (maps summing to 0 become uniform)."""
    total = m.sum(dim=(-2, -1), keepdim=True)
    uniform = torch.full_like(m, 1.0 / (m.shape[-1] * m.shape[-2]))
    return torch.where(total > 0, m / total.clamp_min(1e-30), uniform)


def upsample_maps(grid: torch.Tensor, size: int, mode: str = "nearest") -> torch.Tensor:
    """(N, C, h, w) maps -> (N, C, size, size), each rescaled to sum to 1 over pixels."""
    if mode not in UPSAMPLE_MODES:
        raise ValueError(f"upsample must be one of {', '.join(UPSAMPLE_MODES)}, got {mode!r}")
    kwargs = {} if mode == "nearest" else {"align_corners": False}
    up = F.interpolate(grid, size=(size, size), mode=mode, **kwargs).clamp_min(0.0)
    return _normalise_maps(up)


@torch.no_grad()
def attention_maps(run_dir, images, checkpoint=None, *, device: str = "cpu",
                   upsample: str = "nearest") -> AttentionResult:
    """Attention (ViT) or feature-norm (CNN) maps of ``images`` under a run's checkpoint.

    ``images``: uint8 or float in [0, 1], (N, 3, H, W) or one (3, H, W); resized to the run's image
    size and normalised with its mean/std. ``checkpoint`` defaults to ``checkpoints/last.pt``.
    Uses the online backbone (the one kNN and export use)."""
    from ..data.augment import ViewGenerator
    from ..models.backbones import feature_maps, is_vit_backbone, last_attention
    from .common import restored

    method, cfg, _ = restored(run_dir, checkpoint, device)
    backbone = method.backbone
    dev = next(backbone.parameters()).device
    size = int(cfg.data.image_size)
    x01 = _images01(images, size)
    views = ViewGenerator(cfg.augment, size)
    is_vit = is_vit_backbone(backbone)
    grids = []
    for start in range(0, x01.shape[0], _CHUNK):
        x = views.normalize(x01[start:start + _CHUNK].to(dev))
        if is_vit:
            g = last_attention(backbone, x)
        else:
            fm = feature_maps(backbone, x).float()
            g = fm.pow(2).sum(dim=1, keepdim=True).sqrt()
        grids.append(_normalise_maps(g.float()).cpu())
    grid = torch.cat(grids) if grids else torch.zeros(0, 1, 1, 1)
    per_head = upsample_maps(grid, size, upsample) if grid.shape[0] else torch.zeros(0, grid.shape[1], size, size)
    cell = size // int(grid.shape[-1]) if grid.shape[-1] else size
    if is_vit:
        kind, note = "attention", (f"last-block CLS attention of {grid.shape[1]} heads on a "
                                   f"{grid.shape[-2]}x{grid.shape[-1]} patch grid ({upsample} upsampling)")
    else:
        kind, note = "feature_norm", (f"attention maps need a ViT backbone; {cfg.model.backbone} has none, "
                                      f"so this is the L2 norm of its last feature map "
                                      f"({grid.shape[-2]}x{grid.shape[-1]}, {upsample} upsampling)")
    return AttentionResult(per_head=per_head, mean=per_head.mean(dim=1), grid=grid, images=x01,
                           kind=kind, cell=cell, note=note)


def attention_threshold_mask(attn_grid, mass: float = 0.6) -> torch.Tensor:
    """Boolean mask (same shape as ``attn_grid`` (..., h, w)) keeping, per map, the smallest set
    of patches that holds at least ``mass`` of the map's total attention (DINO's thresholded
    attention: the patches are taken in decreasing order of attention until their cumulative sum
    reaches ``mass``; equal values are taken in index order). ``mass`` <= 0 keeps nothing."""
    a = torch.as_tensor(np.asarray(attn_grid)) if not isinstance(attn_grid, torch.Tensor) else attn_grid
    if a.ndim < 2:
        raise ValueError(f"attn_grid must have at least 2 dims (h, w), got shape {tuple(a.shape)}")
    shape = a.shape
    flat = a.detach().reshape(-1, shape[-2] * shape[-1]).double().cpu()
    flat = flat / flat.sum(dim=1, keepdim=True).clamp_min(1e-300)
    order = torch.argsort(-flat, dim=1, stable=True)
    vals = flat.gather(1, order)
    before = vals.cumsum(dim=1) - vals               # mass of the patches ranked above this one
    keep_sorted = before < float(mass) - 1e-12
    mask = torch.zeros_like(keep_sorted)
    mask.scatter_(1, order, keep_sorted)
    return mask.reshape(shape)


def load_image_file(path, size: int) -> torch.Tensor:
    """Any image file -> uint8 (3, size, size): EXIF-oriented, RGB (alpha on white), centre square
    resized (the decoding of ``imagefolder`` sources). DataError names the file when it fails."""
    from ..data.imagefolder import decode_image, error_reason

    try:
        array = decode_image(path, int(size))
    except Exception as exc:  # noqa: BLE001 - PIL raises many types; one sentence for all
        raise DataError(f"cannot open image {path}: {error_reason(exc)}") from None
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))
