"""Self-supervised losses as pure tensor functions (no logging, no optimiser, no global state).

Conventions shared by every function here:

* Embeddings are ``(N, D)``; a loss returns a scalar tensor.
* Functions that use cosine similarity L2-normalise their inputs themselves, so callers may pass
  raw projector outputs.
* Math runs in float32 even when the inputs are bf16/fp16 (they are cast up) and autocast is
  switched off inside, so the trainer may call these under ``torch.autocast``. float64 inputs stay
  float64 (handy for tests).
* Nothing is all-gathered: in DDP the caller decides what each rank sees.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

__all__ = [
    "nt_xent", "info_nce", "batch_info_nce", "dcl", "dclw", "negative_cosine", "barlow_twins", "vicreg",
    "dino", "dino_center_update", "sinkhorn", "swav", "supcon", "hcl",
]

_LOW_PRECISION = (torch.float16, torch.bfloat16)


def _upcast(obj):
    """Cast half/bf16 tensors (also inside lists and tuples) to float32; leave the rest alone."""
    if isinstance(obj, torch.Tensor):
        return obj.float() if obj.dtype in _LOW_PRECISION else obj
    if isinstance(obj, (list, tuple)):
        return type(obj)(_upcast(o) for o in obj)
    return obj


def _first_device(objs) -> torch.device | None:
    for obj in objs:
        if isinstance(obj, torch.Tensor):
            return obj.device
        if isinstance(obj, (list, tuple)):
            found = _first_device(obj)
            if found is not None:
                return found
    return None


def _fp32(fn):
    """Run ``fn`` with low-precision tensor arguments cast to float32 and autocast disabled."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        args, kwargs = _upcast(args), {k: _upcast(v) for k, v in kwargs.items()}
        device = _first_device(list(args) + list(kwargs.values()))
        if (device is not None and torch.amp.is_autocast_available(device.type)
                and torch.is_autocast_enabled(device.type)):
            with torch.autocast(device_type=device.type, enabled=False):
                return fn(*args, **kwargs)
        return fn(*args, **kwargs)

    return wrapper


def _off_diagonal_sq_sum(m: torch.Tensor) -> torch.Tensor:
    """Sum of squares of the off-diagonal entries of a square matrix (masked, no cancellation)."""
    eye = torch.eye(m.shape[0], dtype=torch.bool, device=m.device)
    return m.pow(2).masked_fill(eye, 0.0).sum()


def _cross_product_terms(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(diagonal of ``a^T b`` (D,), sum of squares of its off-diagonal entries) for ``a``, ``b``
    (N, D), the (D, D) product formed only when N >= D.

    With fewer rows than columns (batch 256, a 2048-wide projector) the off-diagonal sum comes
    from the two (N, N) Gram matrices instead: ``||a^T b||_F^2 = sum((a a^T) * (b b^T))``, minus
    the squared diagonal - 4x fewer multiply-adds forward and backward at 256 x 2048. The same
    number up to rounding: ``a^T b`` has rank <= N < D, so its off-diagonal part holds at least
    (D/N - 1) times its diagonal's share of the squares and the subtraction cancels at most about
    one digit.
    """
    diagonal = (a * b).sum(dim=0)
    n, d = a.shape
    if n >= d:
        return diagonal, _off_diagonal_sq_sum(a.T @ b)
    gram_a = a @ a.T
    gram_b = gram_a if b is a else b @ b.T
    return diagonal, (gram_a * gram_b).sum() - diagonal.pow(2).sum()


def _pair_similarities(z1: torch.Tensor, z2: torch.Tensor, temperature: float):
    """Normalised 2N x 2N similarity logits of [z1; z2] and the index of each row's positive."""
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2.to(z1.dtype)]), dim=1)
    logits = z @ z.T / temperature
    positive = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return logits, positive


@_fp32
def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.5) -> torch.Tensor:
    """NT-Xent (normalised temperature-scaled cross entropy), SimCLR (Chen et al. 2020).

    ``z1``, ``z2``: (N, D) embeddings of two views, row i of each from the same image. Every one of
    the 2N embeddings is an anchor with one positive (its other view) and 2N - 2 negatives (all
    other embeddings, itself excluded). Returns the mean over the 2N anchors of
    ``-log(exp(s_ip / t) / sum_{k != i} exp(s_ik / t))`` with cosine similarities ``s``.
    """
    logits, positive = _pair_similarities(z1, z2, temperature)
    self_mask = torch.eye(logits.shape[0], dtype=torch.bool, device=logits.device)
    return F.cross_entropy(logits.masked_fill(self_mask, float("-inf")), positive)


@_fp32
def info_nce(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor,
             temperature: float = 0.2) -> torch.Tensor:
    """InfoNCE with a queue of negatives, MoCo (He et al. 2020, eq. 1).

    ``q``: (N, D) queries; ``k``: (N, D) keys, row-aligned positives; ``queue``: (K, D) negatives.
    Logits per query are ``[q.k, q.queue_1, ..., q.queue_K] / t`` on normalised vectors, and the
    loss is the cross entropy with the positive at index 0, averaged over N. ``k`` and ``queue``
    are constants (detached): gradients reach ``q`` only.
    """
    q = F.normalize(q, dim=1)
    k = F.normalize(k.detach().to(q.dtype), dim=1)
    queue = F.normalize(queue.detach().to(q.dtype), dim=1)
    positive = (q * k).sum(dim=1, keepdim=True)
    negatives = q @ queue.T
    logits = torch.cat([positive, negatives], dim=1) / temperature
    target = torch.zeros(q.shape[0], dtype=torch.long, device=q.device)
    return F.cross_entropy(logits, target)


@_fp32
def batch_info_nce(q: torch.Tensor, k: torch.Tensor, temperature: float = 0.2) -> torch.Tensor:
    """InfoNCE with in-batch negatives, MoCo v3 (Chen et al. 2021, Algorithm 1) and NNCLR
    (Dwibedi et al. 2021, eq. 1).

    ``q``, ``k``: (N, D), row i of each from the same image. Logits are the (N, N) cosine
    similarities ``q_i . k_j / t``; query i's positive is key i and its negatives the other N - 1
    keys (nothing from its own view). Returns the mean over queries of the cross entropy with
    targets ``arange(N)``. Nothing is detached: the caller decides which side is a constant (MoCo
    v3 passes momentum keys, NNCLR nearest neighbours from its support set). MoCo v3 multiplies
    this by ``2 * t``; that scaling is the method's, not the loss's.
    """
    q = F.normalize(q, dim=1)
    k = F.normalize(k.to(q.dtype), dim=1)
    logits = q @ k.T / temperature
    return F.cross_entropy(logits, torch.arange(q.shape[0], device=q.device))


def _decoupled(z1, z2, temperature, positive_weight=None):
    logits, positive = _pair_similarities(z1, z2, temperature)
    rows = torch.arange(logits.shape[0], device=logits.device)
    pos_logit = logits[rows, positive]
    # Decoupling: both the anchor itself and its positive leave the denominator.
    excluded = torch.eye(logits.shape[0], dtype=torch.bool, device=logits.device)
    excluded[rows, positive] = True
    neg_term = torch.logsumexp(logits.masked_fill(excluded, float("-inf")), dim=1)
    if positive_weight is not None:
        pos_logit = pos_logit * positive_weight
    return (neg_term - pos_logit).mean()


@_fp32
def dcl(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """Decoupled contrastive loss, DCL (Yeh et al. 2022, eq. 6).

    ``z1``, ``z2``: (N, D), N >= 2. Like NT-Xent but the positive pair is removed from the
    denominator: per anchor ``-s_ip / t + log sum_{k not in {i, p}} exp(s_ik / t)`` over the
    2N - 2 negatives of SimCLR, averaged over the 2N anchors (both views as anchors).
    """
    return _decoupled(z1, z2, temperature)


@_fp32
def dclw(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.1,
         sigma: float = 0.5) -> torch.Tensor:
    """Weighted decoupled contrastive loss, DCLW (Yeh et al. 2022, eq. 7).

    As :func:`dcl`, with the positive term of pair i weighted by the paper's von Mises-Fisher
    weight ``w_i = 2 - exp(s_i / sigma) / mean_j exp(s_j / sigma)`` where ``s_i = cos(z1_i, z2_i)``
    (so the weights average to 1; equivalently ``2 - 2N exp(s_i / sigma) / sum`` over the 2N
    anchors, each pair counted once per view). The weight is computed without gradient.
    """
    n = z1.shape[0]
    with torch.no_grad():
        s = (F.normalize(z1, dim=1) * F.normalize(z2.to(z1.dtype), dim=1)).sum(dim=1)
        w = 2.0 - n * torch.softmax(s / sigma, dim=0)
    return _decoupled(z1, z2, temperature, positive_weight=torch.cat([w, w]))


@_fp32
def negative_cosine(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Negative cosine similarity with stop-gradient, BYOL (Grill et al. 2020) / SimSiam (Chen &
    He 2021).

    ``p``: (N, D) predictions; ``z``: (N, D) targets, detached. Returns ``-mean_i cos(p_i, z_i)``
    in [-1, 1]. BYOL writes its loss as ``2 - 2 cos``: an affine map of this one (same gradients up
    to a factor 2), so we use SimSiam's form for both. Symmetrise in the caller.
    """
    p = F.normalize(p, dim=1)
    z = F.normalize(z.detach().to(p.dtype), dim=1)
    return -(p * z).sum(dim=1).mean()


@_fp32
def barlow_twins(z1: torch.Tensor, z2: torch.Tensor, lambd: float = 0.005) -> torch.Tensor:
    """Barlow Twins redundancy reduction (Zbontar et al. 2021, eq. 1).

    ``z1``, ``z2``: (N, D). Each view's columns are standardised over the batch as a BatchNorm1d
    without affine parameters would (mean 0, biased variance, eps 1e-5), ``C = z1n^T z2n / N`` is
    the (D, D) cross-correlation, and the loss is
    ``sum_i (1 - C_ii)^2 + lambd * sum_{i != j} C_ij^2``.
    """
    n = z1.shape[0]

    def standardise(z):
        return (z - z.mean(dim=0)) / torch.sqrt(z.var(dim=0, unbiased=False) + 1e-5)

    diagonal, off_diagonal = _cross_product_terms(standardise(z1), standardise(z2.to(z1.dtype)))
    on_diag = (1.0 - diagonal / n).pow(2).sum()
    return on_diag + lambd * off_diagonal / n ** 2


@_fp32
def vicreg(z1: torch.Tensor, z2: torch.Tensor, sim_weight: float = 25.0,
           var_weight: float = 25.0, cov_weight: float = 1.0) -> torch.Tensor:
    """VICReg variance-invariance-covariance loss (Bardes et al. 2022, eq. 6 and Algorithm 1).

    ``z1``, ``z2``: (N, D), N >= 2. Follows the paper's pseudo-code (Algorithm 1) exactly:

    * invariance: ``mse(z1, z2)``, the mean over N and D;
    * variance: ``mean_j relu(1 - sqrt(Var(z_:j) + 1e-4))`` with the unbiased variance, *summed*
      over the two views (the official repository halves this sum; the paper does not);
    * covariance: ``sum_{i != j} Cov(z)_ij^2 / D`` with the unbiased covariance, summed over views.

    Returns ``sim_weight * inv + var_weight * var + cov_weight * cov``.
    """
    d = z1.shape[1]
    z2 = z2.to(z1.dtype)
    invariance = F.mse_loss(z1, z2)

    def variance(z):
        return F.relu(1.0 - torch.sqrt(z.var(dim=0) + 1e-4)).mean()

    def covariance(z):
        zc = z - z.mean(dim=0)
        return _cross_product_terms(zc, zc)[1] / (z.shape[0] - 1) ** 2 / d

    return (sim_weight * invariance + var_weight * (variance(z1) + variance(z2))
            + cov_weight * (covariance(z1) + covariance(z2)))


@_fp32
def dino(student_out: Sequence[torch.Tensor], teacher_out: Sequence[torch.Tensor],
         center: torch.Tensor, student_temp: float = 0.1,
         teacher_temp: float = 0.04) -> torch.Tensor:
    """DINO self-distillation cross entropy (Caron et al. 2021, eq. 3 and Algorithm 1).

    ``student_out``: list of V per-view logits, each (N, K); ``teacher_out``: list of T <= V
    per-view logits, each (N, K), for the same views as the first T student entries (the global
    crops); ``center``: (K,) or (1, K). Teacher probabilities ``softmax((t - center) /
    teacher_temp)`` are constants; the student uses ``log_softmax(s / student_temp)``. Returns the
    mean over the pairs (teacher view a, student view b) with a != b of
    ``mean_n sum_k -P_t[n, k] log P_s[n, k]``. Update the centre with :func:`dino_center_update`.
    """
    center = center.detach()
    teacher_probs = [torch.softmax((t.detach().to(center.dtype) - center) / teacher_temp, dim=-1)
                     for t in teacher_out]
    student_logp = [torch.log_softmax(s / student_temp, dim=-1) for s in student_out]
    total, terms = 0.0, 0
    for a, probs in enumerate(teacher_probs):
        for b, logp in enumerate(student_logp):
            if a == b:
                continue  # the same crop seen by both networks is not a prediction task
            total = total + (-probs * logp.to(probs.dtype)).sum(dim=-1).mean()
            terms += 1
    if terms == 0:
        raise ValueError("dino needs at least one (teacher view, other student view) pair")
    return total / terms


@torch.no_grad()
def dino_center_update(center: torch.Tensor, teacher_out: Sequence[torch.Tensor],
                       momentum: float = 0.9) -> torch.Tensor:
    """DINO centring (Caron et al. 2021, eq. 4): returns a new centre, the input is not modified.

    ``center``: (K,) or (1, K); ``teacher_out``: list of (N, K) teacher logits (raw, before centring
    and temperature). New centre = ``m * center + (1 - m) * mean of all teacher rows``, same shape
    and dtype as ``center``. In DDP the caller must all-reduce the batch mean across ranks first
    (or pass every rank's rows); this function sees only what it is given.
    """
    rows = torch.cat([t.detach().reshape(-1, t.shape[-1]) for t in teacher_out]).to(center.dtype)
    batch_center = rows.mean(dim=0).reshape(center.shape)
    return center * momentum + batch_center * (1.0 - momentum)


@torch.no_grad()
def sinkhorn(scores: torch.Tensor, epsilon: float = 0.05, iterations: int = 3) -> torch.Tensor:
    """Sinkhorn-Knopp equipartition codes, SwAV (Caron et al. 2020, eq. 3 and Algorithm 1).

    ``scores``: (B, K) prototype scores. With ``Q = exp(scores / epsilon)^T`` (K, B) normalised to
    total mass 1, alternately rescales rows to sum 1/K and columns to sum 1/B ``iterations``
    times, then multiplies by B so each sample's code sums to 1. Returns (B, K) soft codes with no
    gradient. Computed in the log domain (logsumexp subtracts the maxima), which is the same
    result without overflow or underflow in float32. B is the local batch: no all-reduce.
    """
    s = scores.detach()
    if s.dtype != torch.float64:
        s = s.float()
    b, k = s.shape
    log_q = s.T / epsilon
    log_q = log_q - torch.logsumexp(log_q.reshape(-1), dim=0)
    for _ in range(iterations):
        log_q = log_q - torch.logsumexp(log_q, dim=1, keepdim=True) - math.log(k)  # rows: 1/K
        log_q = log_q - torch.logsumexp(log_q, dim=0, keepdim=True) - math.log(b)  # cols: 1/B
    return torch.exp(log_q + math.log(b)).T.contiguous()


@_fp32
def swav(scores_per_view: Sequence[torch.Tensor], queue=None, temperature: float = 0.1, *,
         epsilon: float = 0.05, sinkhorn_iterations: int = 3) -> torch.Tensor:
    """SwAV swapped prediction (Caron et al. 2020, eq. 1-2 and Algorithm 1).

    ``scores_per_view``: list of V >= 2 tensors (B, K), the scores of each view's normalised
    embedding against the prototypes; the first two are the global views that get codes.
    ``queue``: optional per-global-view scores of queued embeddings, a list of two (Q, K) tensors
    or a (2, Q, K) tensor; they are prepended to that view's batch scores before Sinkhorn and
    only the batch's B codes are kept. Codes ``q_i = sinkhorn(scores_i)`` carry no gradient.
    Returns the mean over i in {0, 1} and v != i of
    ``mean_b -sum_k q_i[b, k] log softmax(scores_v[b] / temperature)_k``.
    """
    views = list(scores_per_view)
    if len(views) < 2:
        raise ValueError("swav needs at least two views (the two global crops)")
    batch = views[0].shape[0]
    total = 0.0
    for i in range(2):
        s = views[i].detach()
        if queue is not None:
            s = torch.cat([queue[i].detach().to(s), s])
        codes = sinkhorn(s, epsilon=epsilon, iterations=sinkhorn_iterations)[-batch:]
        swapped = 0.0
        for v, scores in enumerate(views):
            if v == i:
                continue
            logp = torch.log_softmax(scores / temperature, dim=1)
            swapped = swapped + (-codes.to(logp.dtype) * logp).sum(dim=1).mean()
        total = total + swapped / (len(views) - 1)
    return total / 2


@_fp32
def supcon(z: torch.Tensor, labels: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """Supervised contrastive loss, SupCon (Khosla et al. 2020, eq. 2, the "L_out" form).

    ``z``: (M, D), every view of every image stacked; ``labels``: (M,). For anchor i with positives
    P(i) (other rows with its label) the loss is ``-1/|P(i)| sum_{p in P(i)} log(exp(s_ip / t) /
    sum_{a != i} exp(s_ia / t))`` on cosine similarities; anchors without a positive are skipped
    and the rest averaged. The official code's extra factor ``t / base_t`` is left out (it is 1 at
    the paper's t = base_t = 0.07).
    """
    if labels.shape != (z.shape[0],):
        raise ValueError(f"supcon needs labels of shape ({z.shape[0]},), got {tuple(labels.shape)}")
    z = F.normalize(z, dim=1)
    self_mask = torch.eye(z.shape[0], dtype=torch.bool, device=z.device)
    logits = (z @ z.T / temperature).masked_fill(self_mask, float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    labels = labels.to(z.device)
    positives = (labels[:, None] == labels[None, :]) & ~self_mask
    count = positives.sum(dim=1)
    if not bool((count > 0).any()):
        raise ValueError("supcon: no anchor has a positive (every label occurs once)")
    per_anchor = -log_prob.masked_fill(~positives, 0.0).sum(dim=1)
    return (per_anchor[count > 0] / count[count > 0]).mean()


@_fp32
def hcl(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.5, beta: float = 1.0,
        tau_plus: float = 0.1) -> torch.Tensor:
    """Hard-negative contrastive loss, HCL (Robinson et al. 2021, eq. 3 and their image code).

    SimCLR's 2N anchors and M = 2N - 2 negatives each (as :func:`nt_xent`). With ``pos = e^{s_p/t}``
    and ``neg_k = e^{s_k/t}``, the negatives get importance weights ``w_k = M neg_k^beta / sum_j
    neg_j^beta`` (mean 1), ``Ng = (sum_k w_k neg_k - tau_plus M pos) / (1 - tau_plus)`` is clamped
    below at ``M e^{-1/t}`` and the loss is the mean of ``-log(pos / (pos + Ng))``. As in the
    reference code the weights are not detached. beta = 0 is the debiased loss (Chuang et al. 2020);
    beta = tau_plus = 0 is :func:`nt_xent`. Computed with all logits shifted by -1/t (exact,
    stable); in float32 keep t >= 0.02 so the clamp e^{-2/t} stays representable.
    """
    if not 0.0 <= tau_plus < 1.0:
        raise ValueError(f"hcl needs 0 <= tau_plus < 1, got {tau_plus}")
    if z1.shape[0] < 2:
        raise ValueError("hcl needs a batch of at least 2 pairs")
    logits, positive = _pair_similarities(z1, z2, temperature)
    logits = logits - 1.0 / temperature
    n2 = logits.shape[0]
    rows = torch.arange(n2, device=logits.device)
    pos_logit = logits[rows, positive]
    excluded = torch.eye(n2, dtype=torch.bool, device=logits.device)
    excluded[rows, positive] = True
    neg_logit = logits[~excluded].view(n2, n2 - 2)
    m = n2 - 2
    weights = m * torch.softmax(beta * neg_logit, dim=1)
    ng = ((weights * neg_logit.exp()).sum(dim=1) - tau_plus * m * pos_logit.exp()) / (1 - tau_plus)
    ng = ng.clamp(min=m * math.exp(-2.0 / temperature))
    return (torch.log(pos_logit.exp() + ng) - pos_logit).mean()
