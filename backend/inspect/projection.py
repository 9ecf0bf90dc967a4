"""2-D projections of embeddings (PCA, UMAP, t-SNE) and k-means cluster labels.

Every method works on L2-normalised rows (cosine geometry, the one SSL losses train), is
deterministic for a given ``seed`` and returns float32 (N, 2).

- ``pca``: centred SVD (numpy), signs fixed so the largest-magnitude loading of each component is
  positive; instant.
- ``umap``: umap-learn with ``random_state=seed`` (which also makes it single-threaded and so
  reproducible), cosine metric, ``n_neighbors = min(15, N - 1)``. Numba compiles UMAP's kernels
  the first time (tens of seconds) and caches them in ``$NUMBA_CACHE_DIR``, set to
  ``~/.cache/sslwb/numba`` when unset.
- ``tsne``: scikit-learn's TSNE with PCA initialisation, perplexity ``min(30, (N - 1) / 3)``.

With fewer than 4 points UMAP and t-SNE are undefined; PCA is used instead.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from ..reporter import as_reporter

PROJECTIONS = ("pca", "umap", "tsne")


def _as_numpy(features) -> np.ndarray:
    if hasattr(features, "detach"):
        features = features.detach().cpu().numpy()
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"features must be (N, F), got shape {x.shape}")
    return x


def _l2_normalise(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _pca(x: np.ndarray) -> np.ndarray:
    x = x - x.mean(axis=0, keepdims=True)
    _, s, vt = np.linalg.svd(x, full_matrices=False)
    comps = vt[:2]
    signs = np.sign(comps[np.arange(comps.shape[0]), np.abs(comps).argmax(axis=1)])
    comps = comps * np.where(signs == 0, 1.0, signs)[:, None]
    xy = x @ comps.T
    if xy.shape[1] < 2:  # a single feature (or a single point): pad with zeros
        xy = np.concatenate([xy, np.zeros((xy.shape[0], 2 - xy.shape[1]))], axis=1)
    return xy


def ensure_numba_cache() -> None:
    """Point numba's on-disk cache at ~/.cache/sslwb/numba unless NUMBA_CACHE_DIR is set."""
    if not os.environ.get("NUMBA_CACHE_DIR"):
        folder = Path.home() / ".cache" / "sslwb" / "numba"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            os.environ["NUMBA_CACHE_DIR"] = str(folder)
        except OSError:
            pass


class _EpochSink:
    """A file for UMAP's tqdm bar (formatted ``{n}/{total}``): each write becomes a progress
    report, and a cancel request raises :class:`~backend.errors.Cancelled` out of UMAP's epoch loop."""

    def __init__(self, report):
        self.report = report

    def write(self, text: str) -> None:
        found = re.findall(r"(\d+)/(\d+)", text)
        if found:
            done, total = map(int, found[-1])
            self.report(done / max(total, 1), f"UMAP: optimising the layout, epoch {done}/{total}")

    def flush(self) -> None:
        """(Nothing is buffered.)"""


def _umap(x: np.ndarray, seed: int, report=None) -> np.ndarray:
    report = as_reporter(report)
    ensure_numba_cache()
    import warnings

    import umap

    report(0.0, f"UMAP: nearest-neighbour graph of {x.shape[0]} points")
    epochs = _EpochSink(report.sub(0.3, 1.0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "n_jobs overridden by random_state", numba notes
        reducer = umap.UMAP(n_components=2, n_neighbors=max(2, min(15, x.shape[0] - 1)),
                            metric="cosine", random_state=int(seed), init="spectral",
                            tqdm_kwds={"file": epochs, "disable": False, "mininterval": 0.25,
                                       "bar_format": "{n}/{total}"})
        return reducer.fit_transform(x.astype(np.float32))


def _tsne(x: np.ndarray, seed: int) -> np.ndarray:
    from sklearn.manifold import TSNE

    perplexity = float(min(30.0, max(1.0, (x.shape[0] - 1) / 3.0)))
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=int(seed),
                learning_rate="auto").fit_transform(x.astype(np.float32))


def project_2d(features, method: str = "pca", seed: int = 0, progress=None, cancelled=None) -> np.ndarray:
    """(N, 2) float32 projection of features (N, F) by ``pca``, ``umap`` or ``tsne`` (see module)."""
    if method not in PROJECTIONS:
        raise ConfigError(f"projection must be one of {', '.join(PROJECTIONS)}, got {method!r}")
    report = as_reporter(progress, cancelled)
    x = _l2_normalise(_as_numpy(features))
    n = x.shape[0]
    report(0.0, f"{method.upper()} of {n} points")
    if n == 0:
        return np.zeros((0, 2), np.float32)
    if method == "pca" or n < 4:
        xy = _pca(x)
    elif method == "umap":
        xy = _umap(x, seed, report.sub(0.0, 0.99))
    else:
        xy = _tsne(x, seed)
    report(1.0, f"{method.upper()} done")
    return np.ascontiguousarray(xy, dtype=np.float32)


def cluster_labels(features, k: int = 10, seed: int = 0) -> np.ndarray:
    """k-means cluster ids (N,) int64 of L2-normalised features (for colouring unlabelled data).

    scikit-learn's KMeans with ``random_state=seed`` and 4 restarts; ``k`` is clamped to N."""
    from sklearn.cluster import KMeans

    x = _l2_normalise(_as_numpy(features))
    if x.shape[0] == 0:
        return np.zeros(0, np.int64)
    k = max(1, min(int(k), x.shape[0]))
    km = KMeans(n_clusters=k, n_init=4, random_state=int(seed))
    return km.fit_predict(x.astype(np.float32)).astype(np.int64)
