"""Representation metrics as pure tensor functions: alignment, uniformity, collapse indicators and
weighted kNN classification. Embeddings are (N, D); half/bf16 inputs are computed in float32 with
autocast off (like :mod:`backend.losses`). Wrap calls in ``torch.no_grad()`` when only monitoring;
:func:`knn_predict` never builds a graph.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .losses import _fp32

__all__ = ["alignment", "uniformity", "embedding_std", "effective_rank", "knn_predict",
           "knn_accuracy"]


@_fp32
def alignment(x: torch.Tensor, y: torch.Tensor, alpha: float = 2) -> torch.Tensor:
    """Alignment of positive pairs (Wang & Isola 2020, eq. 4): ``mean_n ||x_n - y_n||_2^alpha``.

    ``x``, ``y``: (N, D), row n of each a positive pair; rows are L2-normalised first. 0 when the
    pairs coincide, at most ``2^alpha``. Lower is better.
    """
    x = F.normalize(x, dim=1)
    y = F.normalize(y.to(x.dtype), dim=1)
    sq = (x - y).pow(2).sum(dim=1)
    return sq.pow(alpha / 2).mean()


@_fp32
def uniformity(x: torch.Tensor, t: float = 2) -> torch.Tensor:
    """Uniformity (Wang & Isola 2020, eq. 5): ``log mean_{i<j} exp(-t ||x_i - x_j||^2)``.

    ``x``: (N, D), N >= 2, rows L2-normalised first. More negative is more uniform on the sphere;
    0 when every row is the same point. Uses ``||a - b||^2 = 2 - 2 a.b`` for unit rows (no sqrt,
    so gradients stay finite for duplicate points), the dot products from one Gram matrix (never
    the (N^2/2, D) pair rows: at N = 256, D = 2048 those are 0.5 GB), and a logsumexp for the log-mean.
    """
    x = F.normalize(x, dim=1)
    n = x.shape[0]
    i, j = torch.triu_indices(n, n, offset=1, device=x.device)
    sq_dist = (2.0 - 2.0 * (x @ x.T)[i, j]).clamp_min(0.0)
    return torch.logsumexp(-t * sq_dist, dim=0) - math.log(sq_dist.numel())


@_fp32
def embedding_std(z: torch.Tensor) -> torch.Tensor:
    """Collapse indicator used by SimSiam (Chen & He 2021, sec. 4.1): the per-dimension standard
    deviation over the batch of the L2-normalised rows, averaged over dimensions.

    ``z``: (N, D), N >= 2. About ``1/sqrt(D)`` for well-spread embeddings, 0 when collapsed to one
    point. Uses the unbiased (N - 1) standard deviation.
    """
    return F.normalize(z, dim=1).std(dim=0).mean()


@_fp32
def effective_rank(z: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """RankMe effective rank (Garrido et al. 2023, eq. 1): ``exp(-sum_k p_k log p_k)`` with
    ``p_k = sigma_k / ||sigma||_1 + eps`` over the singular values ``sigma`` of ``z``.

    ``z``: (N, D) taken as is: rows are neither normalised nor centred (as in the paper). Ranges
    from about 1 (collapsed) to ``min(N, D)``; equals r for a rank-r matrix with equal singular
    values. NaN when ``z`` holds a non-finite value (the SVD itself would fail), without a host sync.
    """
    if z.dtype != torch.float64:
        z = z.float()
    finite = torch.isfinite(z).all()
    s = torch.linalg.svdvals(torch.where(finite, z, torch.zeros_like(z)))
    p = s / s.sum().clamp_min(torch.finfo(s.dtype).tiny) + eps
    rank = torch.exp(-(p * torch.log(p)).sum())
    return torch.where(finite, rank, torch.full_like(rank, float("nan")))


@torch.no_grad()
@_fp32
def knn_votes(features: torch.Tensor, bank: torch.Tensor, bank_labels: torch.Tensor,
              num_classes: int, k: int = 200, temperature: float = 0.1, *,
              chunk_size: int = 512) -> torch.Tensor:
    """Class votes (N, C) of the weighted cosine kNN classifier (Wu et al. 2018, InstDisc; the
    usual SSL monitor): the ranking behind :func:`knn_predict`, for top-5 and confusion matrices.

    ``features``: (N, D) queries; ``bank``: (M, D) reference features; ``bank_labels``: (M,) ints
    in ``[0, num_classes)``. Rows are L2-normalised; for each query the k most cosine-similar bank
    rows (k clamped to M) vote for their label with weight ``exp(sim / temperature)``, scaled per
    query by ``exp(-best_sim / temperature)`` (which keeps exp from overflowing at small
    temperatures and changes no ranking). Queries are processed ``chunk_size`` at a time (memory
    ~ chunk_size x M), which does not change the result. Returned on ``features``' device.
    """
    if bank.shape[0] == 0:
        raise ValueError("knn_predict needs a non-empty feature bank")
    if chunk_size < 1:
        raise ValueError("chunk_size must be at least 1")
    bank_n = F.normalize(bank, dim=1)
    labels = bank_labels.to(bank.device, torch.long)
    k = max(1, min(int(k), bank.shape[0]))
    out = torch.empty(features.shape[0], num_classes, dtype=bank_n.dtype, device=features.device)
    for start in range(0, features.shape[0], chunk_size):
        query = features[start:start + chunk_size].to(bank_n.device, bank_n.dtype)
        sim = F.normalize(query, dim=1) @ bank_n.T
        top_sim, top_idx = sim.topk(k, dim=1)
        weights = ((top_sim - top_sim.amax(dim=1, keepdim=True)) / temperature).exp()
        votes = torch.zeros(query.shape[0], num_classes, dtype=weights.dtype, device=weights.device)
        votes.scatter_add_(1, labels[top_idx], weights)
        out[start:start + query.shape[0]] = votes.to(out.device)
    return out


def knn_predict(features: torch.Tensor, bank: torch.Tensor, bank_labels: torch.Tensor,
                num_classes: int, k: int = 200, temperature: float = 0.1, *,
                chunk_size: int = 512) -> torch.Tensor:
    """(N,) int64 labels of the weighted cosine kNN classifier: the argmax of :func:`knn_votes`
    (same arguments)."""
    return knn_votes(features, bank, bank_labels, num_classes, k, temperature, chunk_size=chunk_size).argmax(dim=1)


def knn_accuracy(features: torch.Tensor, labels: torch.Tensor, bank: torch.Tensor,
                 bank_labels: torch.Tensor, num_classes: int, k: int = 200,
                 temperature: float = 0.1, *, chunk_size: int = 512) -> float:
    """Top-1 accuracy in [0, 1] of :func:`knn_predict` against ``labels`` (N,)."""
    if features.shape[0] == 0:
        return 0.0
    pred = knn_predict(features, bank, bank_labels, num_classes, k, temperature,
                       chunk_size=chunk_size)
    return (pred == labels.to(pred.device)).float().mean().item()
