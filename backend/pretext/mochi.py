"""MoCHi: mixing of contrastive hard negatives (Kalantidis et al. 2020, sec. 4).

For each query q (normalised) the MoCo queue is ranked by similarity ``q . n`` and the ``n_hard``
most similar entries (the hardest negatives, Q~^N in the paper) are kept. From them:

* ``n_mix`` (the paper's s) synthetic points ``normalise(a n_i + (1 - a) n_j)``, i != j drawn
  uniformly from the hardest, ``a ~ U(0, 1)``;
* ``n_query_mix`` (the paper's s') points ``normalise(b q + (1 - b) n_j)``, ``b ~ U(0, 0.5)`` so
  the query weighs less than the negative.

They are per-query constants (detached) appended to the logits as extra negatives
(:func:`info_nce_with_negatives`); they never enter the queue. The paper writes a setting as
MoCHi(N, s, s') and uses N from a few hundred to 1024 against a 16k queue; for a CIFAR-size queue
(4096) our suggestion is N = 256-1024 and s, s' of a few hundred. Randomness: CPU ``generator``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from backend.losses import _fp32

__all__ = ["mochi_negatives", "info_nce_with_negatives"]


@torch.no_grad()
def mochi_negatives(q: torch.Tensor, queue: torch.Tensor, n_hard: int, n_mix: int,
                    n_query_mix: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """(N, n_mix + n_query_mix, D) unit synthetic hard negatives for queries ``q`` (N, D) from
    ``queue`` (K, D): the negative-negative mixes first, then the query mixes. No gradient."""
    if not 2 <= n_hard <= queue.shape[0]:
        raise ValueError(f"n_hard must be in [2, queue size {queue.shape[0]}], got {n_hard}")
    if n_mix < 0 or n_query_mix < 0:
        raise ValueError(f"mix counts must be >= 0, got {n_mix} and {n_query_mix}")
    q = q.detach()
    q = F.normalize(q.float() if q.dtype in (torch.float16, torch.bfloat16) else q, dim=1)
    queue = F.normalize(queue.detach().to(q.dtype), dim=1)
    n, device = q.shape[0], q.device
    hardest = torch.topk(q @ queue.T, n_hard, dim=1).indices           # (N, n_hard), hardest first
    hard = queue[hardest]                                               # (N, n_hard, D)

    def pick(index):
        return hard.gather(1, index.to(device)[..., None].expand(-1, -1, hard.shape[-1]))

    i = torch.randint(0, n_hard, (n, n_mix), generator=generator)
    j = (i + torch.randint(1, n_hard, (n, n_mix), generator=generator)) % n_hard
    alpha = torch.rand(n, n_mix, 1, generator=generator).to(device=device, dtype=q.dtype)
    mixes = F.normalize(alpha * pick(i) + (1.0 - alpha) * pick(j), dim=-1)
    jq = torch.randint(0, n_hard, (n, n_query_mix), generator=generator)
    beta = 0.5 * torch.rand(n, n_query_mix, 1, generator=generator).to(device=device, dtype=q.dtype)
    query_mixes = F.normalize(beta * q[:, None, :] + (1.0 - beta) * pick(jq), dim=-1)
    return torch.cat([mixes, query_mixes], dim=1)


@_fp32
def info_nce_with_negatives(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor,
                            extra: torch.Tensor, temperature: float = 0.2) -> torch.Tensor:
    """:func:`backend.losses.info_nce` with per-query extra negatives ``extra`` (N, S, D) (e.g.
    :func:`mochi_negatives`): logits ``[q.k, q.queue_1..K, q.extra_1..S] / t``, positive at index
    0. ``k``, ``queue`` and ``extra`` are constants; S = 0 gives ``info_nce`` exactly."""
    if extra.dim() != 3 or extra.shape[0] != q.shape[0]:
        raise ValueError(f"extra must be (N={q.shape[0]}, S, D), got {tuple(extra.shape)}")
    q = F.normalize(q, dim=1)
    k = F.normalize(k.detach().to(q.dtype), dim=1)
    queue = F.normalize(queue.detach().to(q.dtype), dim=1)
    extra = F.normalize(extra.detach().to(q.dtype), dim=-1)
    logits = torch.cat([(q * k).sum(dim=1, keepdim=True), q @ queue.T,
                        torch.einsum("nd,nsd->ns", q, extra)], dim=1) / temperature
    return F.cross_entropy(logits, torch.zeros(q.shape[0], dtype=torch.long, device=q.device))
