"""Colorization as classification over quantised ab bins (Zhang, Isola & Efros 2016, sec. 2.1-2.3).

* Bins: the ab plane on a grid of size 10 (centres at multiples of 10), keeping the cells the sRGB
  gamut reaches. The paper reports Q = 313 for its gamut; the exact gamut of :mod:`.lab`'s
  conversion (sampled on the six faces of the RGB cube, whose image bounds the solid's ab
  projection) reaches **262** cells, and those are the classes here (:func:`ab_bins`).
* Soft encoding: each pixel's ab spreads over its 5 nearest bin centres with Gaussian weights
  (sigma = 5), summing to 1 - kept sparse as (indices, weights), so a 32 px batch never builds an
  (N, Q, H, W) target.
* Rebalancing: ``w proportional to ((1 - lam) p~ + lam / Q)^-1`` with ``E_p~[w] = 1``, where p~ is
  the empirical bin distribution (hard nearest-bin counts gathered by the caller over the training
  set with :func:`bin_counts`) smoothed by a Gaussian of sigma = 5 over the bin centres; lam = 0.5.
* The loss weights each pixel by the weight of its nearest bin (the argmax of its soft target) and
  is the mean over pixels (the paper sums). At 32-96 px predict at the input resolution or a
  quarter of it (the paper's 56 of 224) and average-pool ab to the logits' size before encoding.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from backend.losses import _fp32

from .lab import rgb_to_lab

__all__ = ["GRID", "ab_bins", "soft_encode", "soft_encode_dense", "bin_counts",
           "rebalance_weights", "colorization_loss", "annealed_mean"]

GRID = 10.0


@functools.lru_cache(maxsize=1)
def _gamut_bins() -> torch.Tensor:
    levels = torch.linspace(0.0, 1.0, 128, dtype=torch.float64)
    u, v = (t.flatten() for t in torch.meshgrid(levels, levels, indexing="ij"))
    faces = []
    for channel in range(3):
        others = [c for c in range(3) if c != channel]
        for value in (0.0, 1.0):
            face = torch.empty(3, u.numel(), dtype=torch.float64)
            face[channel], face[others[0]], face[others[1]] = value, u, v
            faces.append(face)
    ab = rgb_to_lab(torch.cat(faces, dim=1).view(1, 3, -1, 1))[0, 1:, :, 0]
    cells = torch.unique(torch.floor(ab / GRID + 0.5).T, dim=0)
    return cells * GRID


def ab_bins(device=None, dtype=torch.float32) -> torch.Tensor:
    """(Q, 2) in-gamut ab bin centres (Q = 262, sorted by a then b), on ``device``."""
    return _gamut_bins().to(device=device, dtype=dtype)


def _flat_ab(ab: torch.Tensor) -> torch.Tensor:
    if ab.dim() != 4 or ab.shape[1] != 2:
        raise ValueError(f"ab must be (N, 2, H, W), got shape {tuple(ab.shape)}")
    return ab.permute(0, 2, 3, 1).reshape(-1, 2)


def soft_encode(ab: torch.Tensor, bins: torch.Tensor, neighbours: int = 5,
                sigma: float = 5.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Soft-encode ab (N, 2, H, W) over ``bins`` (Q, 2): (indices, weights), each (N, k, H, W).

    ``indices`` are the k nearest bins, nearest first; ``weights`` ``exp(-d^2 / (2 sigma^2))``
    normalised to sum 1 over k.
    """
    if not 1 <= neighbours <= bins.shape[0]:
        raise ValueError(f"neighbours must be in [1, {bins.shape[0]}], got {neighbours}")
    n, _, h, w = ab.shape
    flat = _flat_ab(ab)
    d2 = torch.cdist(flat, bins.to(flat)).pow(2)
    nearest, idx = torch.topk(d2, neighbours, dim=1, largest=False)
    weights = torch.softmax(-nearest / (2.0 * sigma ** 2), dim=1)

    def grid(t):
        return t.reshape(n, h, w, neighbours).permute(0, 3, 1, 2)

    return grid(idx), grid(weights)


def soft_encode_dense(indices: torch.Tensor, weights: torch.Tensor, num_bins: int) -> torch.Tensor:
    """The (N, Q, H, W) distribution of a sparse soft encoding (for inspection and tests)."""
    n, _, h, w = indices.shape
    dense = torch.zeros(n, num_bins, h, w, dtype=weights.dtype, device=weights.device)
    return dense.scatter_add_(1, indices, weights)


def bin_counts(ab: torch.Tensor, bins: torch.Tensor) -> torch.Tensor:
    """(Q,) float64 counts of the nearest bin of each pixel of ab (N, 2, H, W); sum over batches."""
    flat = _flat_ab(ab)
    nearest = torch.cdist(flat, bins.to(flat)).argmin(dim=1)
    return torch.bincount(nearest, minlength=bins.shape[0]).to(torch.float64)


def rebalance_weights(counts: torch.Tensor, bins: torch.Tensor, lam: float = 0.5,
                      sigma: float = 5.0) -> torch.Tensor:
    """(Q,) class-rebalancing weights from bin ``counts`` (Zhang et al. 2016, eq. 4), float64.

    ``p = counts / sum``; ``p~_q = sum_r G(c_q - c_r) p_r`` renormalised, with G a Gaussian of
    ``sigma`` over the bin centres; ``w = 1 / ((1 - lam) p~ + lam / Q)`` scaled so ``sum p~ w = 1``.
    """
    if counts.shape != (bins.shape[0],):
        raise ValueError(f"counts must have shape ({bins.shape[0]},), got {tuple(counts.shape)}")
    if not 0.0 < lam <= 1.0:
        raise ValueError(f"lam must be in (0, 1], got {lam}")
    counts = counts.to(torch.float64)
    if bool((counts < 0).any()) or float(counts.sum()) <= 0:
        raise ValueError("counts must be non-negative with a positive total")
    centres = bins.to(device=counts.device, dtype=torch.float64)
    kernel = torch.exp(-torch.cdist(centres, centres).pow(2) / (2.0 * sigma ** 2))
    smoothed = kernel @ (counts / counts.sum())
    smoothed = smoothed / smoothed.sum()
    weights = 1.0 / ((1.0 - lam) * smoothed + lam / bins.shape[0])
    return weights / (smoothed * weights).sum()


@_fp32
def colorization_loss(logits: torch.Tensor, indices: torch.Tensor, weights: torch.Tensor,
                      class_weights: torch.Tensor | None = None) -> torch.Tensor:
    """Rebalanced multinomial cross entropy (Zhang et al. 2016, eq. 2), mean over pixels.

    ``logits``: (N, Q, H, W); ``indices``, ``weights``: a :func:`soft_encode` target at the same
    H, W; ``class_weights``: (Q,) from :func:`rebalance_weights` or None (unweighted). Per pixel
    ``-v(q*) sum_k weights_k log softmax(logits)[indices_k]`` with q* = ``indices[:, 0]``.
    """
    if indices.shape[0] != logits.shape[0] or indices.shape[2:] != logits.shape[2:]:
        raise ValueError(f"target {tuple(indices.shape)} does not match logits "
                         f"{tuple(logits.shape)}")
    logp = F.log_softmax(logits, dim=1).gather(1, indices)
    per_pixel = -(weights.to(logp.dtype) * logp).sum(dim=1)
    if class_weights is not None:
        per_pixel = per_pixel * class_weights.to(per_pixel)[indices[:, 0]]
    return per_pixel.mean()


def annealed_mean(logits: torch.Tensor, bins: torch.Tensor,
                  temperature: float = 0.38) -> torch.Tensor:
    """Decode (N, Q, H, W) logits to ab (N, 2, H, W): the annealed mean of Zhang et al. (eq. 5)."""
    probs = torch.softmax(logits.float() / temperature, dim=1)
    return torch.einsum("nqhw,qc->nchw", probs, bins.to(probs))
