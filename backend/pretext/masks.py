"""Masks for masked-image pretext tasks: the context encoder's dropped regions (Pathak et al.
2016) and MAE's per-sample random patch masking (He et al. 2022).

Context-encoder masks are (N, 1, H, W) bool, True where the pixels are removed (to be filled in).
Pathak et al. drop the central quarter of the area (64 x 64 of 128 x 128) or several random
blocks covering up to a quarter of the image; their third option, random shapes from PASCAL
segmentation masks, needs external masks and is left out. At 32 px: a 16 x 16 central block, or
4 random 8 x 8 blocks (overlap allowed, so coverage <= 1/4).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

__all__ = ["central_block_mask", "random_block_mask", "PatchMask", "random_patch_mask",
           "keep_tokens"]


def _check_size(h: int, w: int) -> None:
    if h < 1 or w < 1:
        raise ValueError(f"image size must be positive, got {h} x {w}")


def central_block_mask(n: int, h: int, w: int, fraction: float = 0.5, device=None) -> torch.Tensor:
    """(N, 1, H, W) bool, True on the centred block of side ``round(fraction * H)`` by
    ``round(fraction * W)`` (the paper's fraction 0.5: a quarter of the area)."""
    _check_size(h, w)
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    bh, bw = max(1, round(fraction * h)), max(1, round(fraction * w))
    top, left = (h - bh) // 2, (w - bw) // 2
    mask = torch.zeros(n, 1, h, w, dtype=torch.bool, device=device)
    mask[:, :, top:top + bh, left:left + bw] = True
    return mask


def random_block_mask(n: int, h: int, w: int, block: int | None = None, coverage: float = 0.25,
                      generator: torch.Generator | None = None, device=None) -> torch.Tensor:
    """(N, 1, H, W) bool: ``round(coverage * H * W / block^2)`` (at least 1) square blocks of side
    ``block`` (default ``min(H, W) // 4``) at uniform random positions per sample, may overlap."""
    _check_size(h, w)
    block = max(1, min(h, w) // 4) if block is None else block
    if not 1 <= block <= min(h, w):
        raise ValueError(f"block {block} does not fit a {h} x {w} image")
    if not 0.0 < coverage <= 1.0:
        raise ValueError(f"coverage must be in (0, 1], got {coverage}")
    count = max(1, round(coverage * h * w / block ** 2))
    top = torch.randint(0, h - block + 1, (n, count, 1, 1), generator=generator).to(device)
    left = torch.randint(0, w - block + 1, (n, count, 1, 1), generator=generator).to(device)
    rows = torch.arange(h, device=device).view(1, 1, h, 1)
    cols = torch.arange(w, device=device).view(1, 1, 1, w)
    inside = (rows >= top) & (rows < top + block) & (cols >= left) & (cols < left + block)
    return inside.any(dim=1, keepdim=True)


class PatchMask(NamedTuple):
    """MAE's masking of L patches: ``ids_keep`` (N, L - M) indices of the visible patches,
    ``ids_restore`` (N, L) the inverse of the shuffle, ``mask`` (N, L) float, 1 = masked."""
    ids_keep: torch.Tensor
    ids_restore: torch.Tensor
    mask: torch.Tensor


def random_patch_mask(n: int, num_patches: int, ratio: float = 0.75,
                      generator: torch.Generator | None = None, device=None) -> PatchMask:
    """Per-sample random masking as MAE does it (shuffle by argsort of uniform noise), with
    exactly ``M = round(ratio * L)`` masked patches per sample (MAE: ``L - int(L (1 - ratio))``,
    the same for the usual L). At 32 px MAE-style ViTs use 4 px patches: L = 64, M = 48."""
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"mask ratio must be in [0, 1), got {ratio}")
    if num_patches < 1:
        raise ValueError(f"num_patches must be positive, got {num_patches}")
    masked = round(ratio * num_patches)
    if masked >= num_patches:
        raise ValueError(f"ratio {ratio} masks all {num_patches} patches")
    keep = num_patches - masked
    noise = torch.rand(n, num_patches, generator=generator).to(device)
    ids_shuffle = torch.argsort(noise, dim=1)
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    mask = torch.ones(n, num_patches, device=device)
    mask[:, :keep] = 0.0
    return PatchMask(ids_shuffle[:, :keep], ids_restore, mask.gather(1, ids_restore))


def keep_tokens(tokens: torch.Tensor, ids_keep: torch.Tensor) -> torch.Tensor:
    """The visible tokens: (N, L, D) -> (N, L - M, D) in ``ids_keep`` order."""
    index = ids_keep.to(tokens.device)[..., None].expand(-1, -1, tokens.shape[-1])
    return tokens.gather(1, index)
