"""Masked pixel-reconstruction losses: MAE (He et al. 2022) and the context encoder (Pathak et al.
2016, its reconstruction term; the adversarial term belongs to the method)."""

from __future__ import annotations

import torch

from backend.losses import _fp32

__all__ = ["normalise_patches", "mae_loss", "inpainting_loss"]


def normalise_patches(patches: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Per-patch pixel normalisation of MAE's ``norm_pix_loss``: (x - mean) / sqrt(var + eps) over
    each patch's last dimension, with the unbiased variance as MAE computes it."""
    mean = patches.mean(dim=-1, keepdim=True)
    var = patches.var(dim=-1, keepdim=True)
    return (patches - mean) / (var + eps).sqrt()


@_fp32
def mae_loss(pred: torch.Tensor, target_patches: torch.Tensor, mask: torch.Tensor,
             norm_pix: bool = True) -> torch.Tensor:
    """MAE reconstruction loss (He et al. 2022, sec. 3): mean squared error per patch, averaged
    over the masked patches only.

    ``pred``, ``target_patches``: (N, L, P) (from :func:`.patches.patchify`); ``mask``: (N, L),
    1 = masked (as :func:`.masks.random_patch_mask`). With ``norm_pix`` the target is normalised per
    patch (:func:`normalise_patches`), MAE's default for its best results. The target is a constant.
    """
    if pred.shape != target_patches.shape or mask.shape != pred.shape[:2]:
        raise ValueError(f"mae_loss shapes disagree: pred {tuple(pred.shape)}, target "
                         f"{tuple(target_patches.shape)}, mask {tuple(mask.shape)}")
    target = target_patches.detach().to(pred.dtype)
    if norm_pix:
        target = normalise_patches(target)
    mask = mask.to(pred.dtype)
    if float(mask.sum()) == 0:
        raise ValueError("mae_loss: the mask has no masked patch")
    per_patch = (pred - target).pow(2).mean(dim=-1)
    return (per_patch * mask).sum() / mask.sum()


@_fp32
def inpainting_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Context-encoder reconstruction loss (Pathak et al. 2016, eq. 1): mean squared error over the
    removed pixels. ``pred``, ``target``: (N, C, H, W); ``mask``: (N, 1, H, W) bool or float,
    1 = removed (weights in between are allowed, e.g. the paper's 10x overlap border). The
    paper's L2 is a sum; the mean over removed pixels and channels keeps the scale size-free."""
    if pred.shape != target.shape or mask.shape != (pred.shape[0], 1, *pred.shape[2:]):
        raise ValueError(f"inpainting_loss shapes disagree: pred {tuple(pred.shape)}, target "
                         f"{tuple(target.shape)}, mask {tuple(mask.shape)}")
    weight = mask.to(pred.dtype)
    total = weight.sum() * pred.shape[1]
    if float(total) == 0:
        raise ValueError("inpainting_loss: the mask removes no pixel")
    return ((pred - target.detach().to(pred.dtype)).pow(2) * weight).sum() / total
