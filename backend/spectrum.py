"""Label-free diagnostics of a batch of embeddings from the eigenvalue spectrum of their covariance.

- :func:`eigenspectrum`: eigenvalues of the centred covariance ``Cov(z)`` (D x D), sorted
  descending and normalised to sum to 1 (the scale of the embeddings drops out);
- RankMe (Garrido et al. 2023) is :func:`backend.metrics.effective_rank`, reused here as is;
- :func:`alpha_req`: alpha-ReQ (Agrawal et al. 2022, "alpha-ReQ: Assessing Representation Quality
  in Self-Supervised Learning by measuring eigenspectrum decay"). The paper models the spectrum of
  the feature covariance as a power law ``lambda_k ~ k^-alpha`` (k = 1, 2, ... the rank of the
  eigenvalue) and reads alpha off a straight-line least-squares fit of ``log lambda_k`` against
  ``log k``. Our exact choice of the index range (1-based, inclusive): ``k = first .. last`` with
  ``first = 2`` by default (the leading eigenvalue is left out, as the authors advise fitting the
  tail rather than the first couple of eigenvalues), ``last`` = the number of non-negligible
  eigenvalues, at most ``min(N - 1, D)`` (a centred covariance of N rows has rank <= N - 1), where
  negligible is ``< 1e-10`` of the largest (their log is meaningless). Both ends can be given;
  alpha is the negated slope, so a faster decay gives a larger alpha.

:func:`spectrum_record` packs one reading (top-64 normalised eigenvalues, alpha, RankMe) into the
fields of one ``metric`` event named ``spectrum`` with ``values=[...]``.
"""

from __future__ import annotations

import math

import torch

from .errors import ConfigError
from .metrics import effective_rank

__all__ = ["eigenspectrum", "alpha_req", "rankme", "spectrum_record", "SPECTRUM_EVENT", "TOP_EIGENVALUES"]

SPECTRUM_EVENT = "spectrum"   # name of the metric event carrying the record
TOP_EIGENVALUES = 64          # eigenvalues kept in a record
NEGLIGIBLE = 1e-10            # eigenvalues below this fraction of the largest are left out of the fit
DEFAULT_FIRST = 2             # first (1-based) eigenvalue index of the alpha-ReQ fit


def _check_embeddings(z: torch.Tensor) -> torch.Tensor:
    if not isinstance(z, torch.Tensor) or z.ndim != 2:
        raise ConfigError(f"embeddings must be a 2-D (N, D) tensor, got "
                          f"{tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__}")
    if z.shape[0] < 2 or z.shape[1] < 1:
        raise ConfigError(f"embeddings need at least 2 rows and 1 column, got shape {tuple(z.shape)}")
    return z.detach().to("cpu", torch.float64)  # a probe batch is small: CPU float64 is exact and cheap


@torch.no_grad()
def eigenspectrum(z: torch.Tensor, normalize: bool = True) -> torch.Tensor:
    """Eigenvalues of the centred covariance of ``z`` (N, D), float64 on the CPU (whatever the
    input's device and dtype), length D, sorted descending.

    Computed from the singular values of the centred rows (``lambda = s^2 / (N - 1)``), which is
    more accurate than an eigendecomposition of the covariance; the ``D - min(N, D)`` eigenvalues a
    small batch cannot see are 0. With ``normalize`` the values sum to 1 (all zeros stay zeros).
    NaN everywhere when ``z`` holds a non-finite value.
    """
    z = _check_embeddings(z)
    n, d = z.shape
    if not bool(torch.isfinite(z).all()):
        return torch.full((d,), float("nan"), dtype=torch.float64)
    s = torch.linalg.svdvals(z - z.mean(dim=0, keepdim=True))
    lam = torch.zeros(d, dtype=torch.float64)
    lam[:s.numel()] = s.pow(2) / (n - 1)
    lam = lam.sort(descending=True).values
    if normalize:
        total = lam.sum()
        if total > 0:
            lam = lam / total
    return lam


def _fit_range(lam: torch.Tensor, n_rows: int | None, first: int, last: int | None) -> tuple[int, int]:
    """The 1-based inclusive index range of the fit (see the module docstring)."""
    usable = int((lam > NEGLIGIBLE * lam[0]).sum()) if lam[0] > 0 else 0
    limit = min(usable, lam.numel() if n_rows is None else min(lam.numel(), n_rows - 1))
    last = limit if last is None else int(last)
    if first < 1 or last > limit or last - first < 1:
        raise ConfigError(f"alpha-ReQ fit range [{first}, {last}] must satisfy 1 <= first < last <= {limit} "
                          f"(the number of non-negligible eigenvalues)")
    return int(first), last


def alpha_req(spectrum_or_z: torch.Tensor, *, first: int = DEFAULT_FIRST, last: int | None = None,
              return_range: bool = False):
    """alpha-ReQ: the power-law decay exponent of the eigenspectrum (module docstring: definition
    and the exact index range). Accepts embeddings (N, D) or an eigenspectrum (1-D, descending,
    e.g. from :func:`eigenspectrum`). Returns a float (NaN for non-finite input), or
    ``(alpha, (first, last))`` with ``return_range``. ConfigError when fewer than two eigenvalues
    are usable in the requested range (e.g. a fully collapsed batch)."""
    x = spectrum_or_z
    n_rows = None
    if isinstance(x, torch.Tensor) and x.ndim == 2:
        n_rows = int(x.shape[0])
        lam = eigenspectrum(x)
    elif isinstance(x, torch.Tensor) and x.ndim == 1:
        lam = x.detach().to(torch.float64)
        if bool(torch.isfinite(lam).all()) and bool((lam[1:] > lam[:-1] * (1 + 1e-9) + 1e-300).any()):
            raise ConfigError("an eigenspectrum passed to alpha_req must be sorted descending")
    else:
        raise ConfigError("alpha_req needs embeddings (N, D) or a 1-D eigenspectrum tensor")
    if not bool(torch.isfinite(lam).all()):
        return (float("nan"), (first, last)) if return_range else float("nan")
    lo, hi = _fit_range(lam, n_rows, first, last)
    k = torch.arange(lo, hi + 1, dtype=torch.float64)
    logk, logl = k.log(), lam[lo - 1:hi].log()
    xc = logk - logk.mean()
    slope = float((xc * (logl - logl.mean())).sum() / (xc * xc).sum())
    alpha = -slope
    return (alpha, (lo, hi)) if return_range else alpha


def rankme(z: torch.Tensor) -> float:
    """RankMe effective rank of ``z`` (N, D): :func:`backend.metrics.effective_rank` as a float."""
    return float(effective_rank(_check_embeddings(z)))


def spectrum_record(z: torch.Tensor, top: int = TOP_EIGENVALUES) -> dict:
    """The compact spectrum reading of one batch (per checkpoint / per probe), as the fields of one
    metric event: ``{"name": "spectrum", "values": [top normalised eigenvalues, descending],
    "dim": D, "samples": N, "alpha": alpha-ReQ or None, "alpha_range": [first, last] or None,
    "rankme": float}``. Emit it with ``writer.emit("metric", step=s, epoch=e, **record)``: it has
    no scalar ``value`` on purpose, so ``metric_series`` (the curves) skips it. Values are plain
    Python floats, rounded to 6 significant digits; alpha is None when the batch has fewer than
    three usable eigenvalues (collapsed)."""
    if int(top) < 1:
        raise ConfigError(f"top must be >= 1, got {top}")
    z = _check_embeddings(z)
    lam = eigenspectrum(z)
    try:
        alpha, fit = alpha_req(z, return_range=True)
        alpha = None if not math.isfinite(alpha) else round(alpha, 6)
        fit = list(fit) if alpha is not None else None
    except ConfigError:
        alpha, fit = None, None
    values = [float(f"{v:.6g}") for v in lam[:int(top)].tolist()]
    rank = rankme(z)
    return {"name": SPECTRUM_EVENT, "values": values, "dim": int(z.shape[1]), "samples": int(z.shape[0]),
            "alpha": alpha, "alpha_range": fit, "rankme": round(rank, 6) if math.isfinite(rank) else None}
