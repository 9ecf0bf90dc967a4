"""Memory-bank losses: instance discrimination (Wu et al. 2018) and PIRL (Misra & van der Maaten
2020).

The bank holds one unit vector per training image (n rows). For a batch the caller looks up each
image's own row (the positive, ``bank[indices]``) and m negative rows drawn with
:func:`sample_negatives` (uniform over the other images; Wu et al. use m = 4096), computes the
loss, then writes the rows back with :func:`bank_update` (momentum 0.5, as both papers). Two forms:

* :func:`memory_bank_info_nce` - the non-parametric softmax over the positive and the m sampled
  negatives (the full-softmax approximation with m negatives), cross entropy with the positive
  at index 0;
* :func:`memory_bank_nce` - noise-contrastive estimation (Wu et al. eq. 5-7; PIRL eq. 3-4):
  ``h(s) = P(s) / (P(s) + m / n)`` with ``P(s) = exp(s / t) / Z``, loss ``-log h(pos) - sum_j
  log(1 - h(neg_j))``. Wu et al. fix Z from the first batches (:func:`estimate_partition`); PIRL
  uses Z = 1.

Bank rows are constants; everything is L2-normalised inside. t = 0.07 in both papers.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from backend.losses import _fp32

__all__ = ["sample_negatives", "memory_bank_info_nce", "memory_bank_nce", "estimate_partition",
           "bank_update", "pirl_loss"]


def sample_negatives(indices: torch.Tensor, bank_size: int, count: int,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """(N, count) long bank indices, uniform over the bank without the sample's own index
    (drawn on the CPU from ``generator``, returned on ``indices``' device); repeats are allowed."""
    if bank_size < 2 or count < 1:
        raise ValueError(f"need bank_size >= 2 and count >= 1, got {bank_size} and {count}")
    own = indices.detach().cpu().long()
    if bool(((own < 0) | (own >= bank_size)).any()):
        raise ValueError(f"indices must lie in [0, {bank_size})")
    shift = torch.randint(1, bank_size, (own.shape[0], count), generator=generator)
    return ((own[:, None] + shift) % bank_size).to(indices.device)


def _scores(v, positive, negatives, temperature):
    """(N,) positive and (N, m) negative similarities / t on normalised vectors."""
    if negatives.dim() not in (2, 3):
        raise ValueError(f"negatives must be (m, D) or (N, m, D), got {tuple(negatives.shape)}")
    v = F.normalize(v, dim=-1)
    positive = F.normalize(positive.detach().to(v.dtype), dim=-1)
    negatives = F.normalize(negatives.detach().to(v.dtype), dim=-1)
    pos = (v * positive).sum(dim=-1)
    neg = v @ negatives.T if negatives.dim() == 2 else torch.einsum("nd,nmd->nm", v, negatives)
    return pos / temperature, neg / temperature


@_fp32
def memory_bank_info_nce(v: torch.Tensor, positive: torch.Tensor, negatives: torch.Tensor,
                         temperature: float = 0.07) -> torch.Tensor:
    """Non-parametric softmax with sampled bank negatives: ``v`` (N, D) features, ``positive``
    (N, D) their bank rows, ``negatives`` (N, m, D) per sample or (m, D) shared. Cross entropy of
    ``[v.pos, v.neg_1, ..., v.neg_m] / t`` with the positive at index 0, mean over N."""
    pos, neg = _scores(v, positive, negatives, temperature)
    logits = torch.cat([pos[:, None], neg], dim=1)
    return F.cross_entropy(logits, torch.zeros(v.shape[0], dtype=torch.long, device=v.device))


@_fp32
def memory_bank_nce(v: torch.Tensor, positive: torch.Tensor, negatives: torch.Tensor,
                    bank_size: int, temperature: float = 0.07,
                    partition: float | torch.Tensor = 1.0) -> torch.Tensor:
    """NCE loss of the module docstring, mean over N (noise distribution uniform, 1 / bank_size).

    Computed as ``h = sigmoid(s / t - log Z - log(m / n))``, so ``log h`` and ``log(1 - h)`` are
    log-sigmoids (stable)."""
    pos, neg = _scores(v, positive, negatives, temperature)
    m = neg.shape[1]
    shift = torch.log(torch.as_tensor(partition, dtype=pos.dtype, device=pos.device)) \
        + math.log(m / bank_size)
    return -(F.logsigmoid(pos - shift) + F.logsigmoid(shift - neg).sum(dim=1)).mean()


@torch.no_grad()
def estimate_partition(v: torch.Tensor, negatives: torch.Tensor, bank_size: int,
                       temperature: float = 0.07) -> torch.Tensor:
    """Monte-Carlo normalising constant of Wu et al.: ``Z = n * mean exp(v . neg / t)`` over the
    batch's sampled negatives (a scalar; the paper computes it once and keeps it fixed)."""
    v = v.float() if v.dtype in (torch.float16, torch.bfloat16) else v
    _, neg = _scores(v, v, negatives, temperature)
    return bank_size * neg.exp().mean()


@torch.no_grad()
def bank_update(rows: torch.Tensor, v: torch.Tensor, momentum: float = 0.5) -> torch.Tensor:
    """New bank rows ``normalise(momentum * rows + (1 - momentum) * normalise(v))`` (rows and v
    (N, D)); the caller writes them with ``bank[indices] = ...`` (last write wins on repeats)."""
    if not 0.0 <= momentum < 1.0:
        raise ValueError(f"momentum must be in [0, 1), got {momentum}")
    mixed = momentum * rows + (1.0 - momentum) * F.normalize(v.to(rows.dtype), dim=-1)
    return F.normalize(mixed, dim=-1)


def pirl_loss(v_image: torch.Tensor, v_transformed: torch.Tensor, positive: torch.Tensor,
              negatives: torch.Tensor, lam: float = 0.5, temperature: float = 0.07,
              bank_size: int | None = None) -> torch.Tensor:
    """PIRL's loss (Misra & van der Maaten 2020, eq. 5): ``lam * L(m_I, g(v_It)) + (1 - lam) *
    L(m_I, f(v_I))``, both against the image's bank row ``positive`` (N, D) and bank
    ``negatives``. ``v_transformed`` is g of the jigsaw/transformed image, ``v_image`` f of the
    image; lam = 0.5 as the paper. L is :func:`memory_bank_nce` with Z = 1 (the paper's form) when
    ``bank_size`` is given, else :func:`memory_bank_info_nce`."""
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"lam must be in [0, 1], got {lam}")

    def term(v):
        if bank_size is None:
            return memory_bank_info_nce(v, positive, negatives, temperature)
        return memory_bank_nce(v, positive, negatives, bank_size, temperature)

    return lam * term(v_transformed) + (1.0 - lam) * term(v_image)
