"""UMAP layouts: a fast default (exact cosine kNN from torch, parallel layout, draft then refine)
and an exactly reproducible one (``random_state=seed``: umap-learn then runs single-threaded).

Why two: a fixed ``random_state`` turns off umap-learn's parallel layout optimisation, which
makes it several times slower. The default therefore leaves it unseeded (the layout differs
slightly from run to run) and hands umap-learn an exact cosine kNN graph computed with a chunked
matrix product in torch (no NN-descent). It first optimises a quick draft (``DRAFT_EPOCHS``),
given to ``on_draft`` so a viewer can show it at once, then refines it (``REFINE_EPOCHS`` more,
starting from the draft). Progress is reported as layout epochs done / total.

Numba compiles UMAP's kernels the first time (tens of seconds) and caches them in
``$NUMBA_CACHE_DIR``, set to ``~/.cache/sslwb/numba`` when unset.
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import numpy as np

from ..errors import Cancelled
from ..reporter import as_reporter

DRAFT_EPOCHS = 50
REFINE_EPOCHS = 150
KNN_CHUNK = 2048


def ensure_numba_cache() -> None:
    """Point numba's on-disk cache at ~/.cache/sslwb/numba unless NUMBA_CACHE_DIR is set."""
    if not os.environ.get("NUMBA_CACHE_DIR"):
        folder = Path.home() / ".cache" / "sslwb" / "numba"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            os.environ["NUMBA_CACHE_DIR"] = str(folder)
        except OSError:
            pass


def n_neighbours(n: int) -> int:
    """UMAP's neighbourhood size for ``n`` points: 15, or fewer for tiny sets."""
    return max(2, min(15, n - 1))


class _EpochSink:
    """A file for UMAP's tqdm bar (formatted ``{n}/{total}``): each write becomes a progress
    report, and a cancel request raises :class:`~backend.errors.Cancelled` out of UMAP's epoch loop."""

    def __init__(self, report, stage: str = "optimising the layout", offset: int = 0, overall: int = 0):
        self.report, self.stage, self.offset, self.overall = report, stage, offset, overall
        self.raised = False   # Cancelled left from inside tqdm (which then still holds its lock)

    def write(self, text: str) -> None:
        """Parse ``done/total`` from tqdm's text and report it."""
        found = re.findall(r"(\d+)/(\d+)", text)
        if found:
            done, total = map(int, found[-1])
            overall = self.overall or total
            done_all = self.offset + done
            try:
                self.report(done_all / max(overall, 1), f"UMAP: {self.stage}, epoch {done_all}/{overall}")
            except Cancelled:
                self.raised = True
                raise

    def flush(self) -> None:
        """(Nothing is buffered.)"""


def _tqdm(sink: _EpochSink) -> dict:
    return {"file": sink, "disable": False, "mininterval": 0.1, "miniters": 1, "bar_format": "{n}/{total}"}


def exact_cosine_knn(x: np.ndarray, k: int, report=None) -> tuple[np.ndarray, np.ndarray]:
    """(indices int64 (N, k), cosine distances float32 (N, k)) of each row's k nearest rows,
    itself first (distance 0), by exact chunked matrix products in torch (rows need not be unit)."""
    import torch

    report = as_reporter(report)
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    t = torch.nn.functional.normalize(t, dim=1)
    n = t.shape[0]
    k = min(int(k), n)
    idx = np.empty((n, k), np.int64)
    dist = np.empty((n, k), np.float32)
    with torch.no_grad():
        for first in range(0, n, KNN_CHUNK):
            report(first / max(n, 1), f"UMAP: exact cosine nearest neighbours, {first}/{n} points")
            rows = slice(first, min(first + KNN_CHUNK, n))
            sims = t[rows] @ t.T
            own = torch.arange(rows.start, rows.stop)
            sims[torch.arange(len(own)), own] = 2.0        # each point is its own first neighbour
            top, where = sims.topk(k, dim=1)
            top[:, 0] = 1.0
            idx[rows] = where.numpy()
            dist[rows] = (1.0 - top).clamp_(min=0.0).numpy()
    return idx, dist


def _fit(x: np.ndarray, sink: _EpochSink, **kwargs) -> np.ndarray:
    import umap

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "n_jobs overridden by random_state", no search index, numba notes
        reducer = umap.UMAP(n_components=2, metric="cosine", tqdm_kwds=_tqdm(sink), **kwargs)
        try:
            return np.asarray(reducer.fit_transform(x.astype(np.float32)), dtype=np.float32)
        except Cancelled:
            if sink.raised:
                _release_tqdm_lock()
            raise


def _release_tqdm_lock() -> None:
    """tqdm's refresh() acquires its class lock without try/finally, so a Cancelled raised from
    our sink during a refresh leaves it held and the next bar in another thread waits forever:
    release it here (when this thread does not hold it, RLock.release raises and nothing changes)."""
    from tqdm import tqdm

    try:
        tqdm.get_lock().release()
    except (RuntimeError, AssertionError, ValueError):
        pass


def reproducible_umap(x: np.ndarray, seed: int, report=None) -> np.ndarray:
    """umap-learn with ``random_state=seed`` (single-threaded, identical layout every time)."""
    report = as_reporter(report)
    ensure_numba_cache()
    report(0.0, f"UMAP (reproducible): nearest-neighbour graph of {x.shape[0]} points")
    sink = _EpochSink(report.sub(0.3, 1.0), "optimising the layout (reproducible)")
    return _fit(x, sink, n_neighbors=n_neighbours(x.shape[0]), random_state=int(seed), init="spectral")


def fast_umap(x: np.ndarray, report=None, on_draft=None, draft_epochs: int = DRAFT_EPOCHS,
              refine_epochs: int = REFINE_EPOCHS) -> np.ndarray:
    """The default UMAP: exact torch kNN, parallel layout, a draft (passed to ``on_draft(xy)``)
    then a refinement starting from it. Not bit-reproducible (see the module docstring)."""
    report = as_reporter(report)
    ensure_numba_cache()
    n = x.shape[0]
    k = n_neighbours(n)
    idx, dist = exact_cosine_knn(x, k, report.sub(0.0, 0.1))
    total = draft_epochs + refine_epochs
    common = {"n_neighbors": k, "precomputed_knn": (idx, dist, None), "n_jobs": -1, "random_state": None}
    layout = report.sub(0.1, 1.0)
    report(0.1, f"UMAP: draft layout of {n} points")
    draft = _fit(x, _EpochSink(layout, "draft layout", 0, total), n_epochs=draft_epochs, init="spectral", **common)
    report.check()
    if on_draft is not None:
        on_draft(draft)
    if refine_epochs <= 0:
        return draft
    sink = _EpochSink(layout, "refining the layout", draft_epochs, total)
    return _fit(x, sink, n_epochs=refine_epochs, init=draft.astype(np.float64), **common)
