"""2-D projections of embeddings (PCA, UMAP, t-SNE) and k-means cluster labels.

Every method works on L2-normalised rows (cosine geometry, the one SSL losses train) and returns
float32 (N, 2); all are deterministic for a given ``seed`` except the default (fast) UMAP.

- ``pca``: centred SVD (numpy), signs fixed so the largest-magnitude loading of each component is
  positive; instant.
- ``umap``: umap-learn, cosine metric, ``n_neighbors = min(15, N - 1)``. By default the fast
  layout of :mod:`backend.inspect.umap_layout` (exact torch kNN, parallel, draft then refine; not
  bit-reproducible); ``reproducible=True`` uses ``random_state=seed`` (single-threaded, slower,
  identical every time). Numba compiles UMAP's kernels the first time (tens of seconds).
- ``tsne``: scikit-learn's TSNE with PCA initialisation, perplexity ``min(30, (N - 1) / 3)``.

With fewer than 4 points UMAP and t-SNE are undefined; PCA is used instead.
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError
from ..reporter import as_reporter
from .umap_layout import ensure_numba_cache, fast_umap, reproducible_umap  # noqa: F401 - re-exported

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


def _tsne(x: np.ndarray, seed: int) -> np.ndarray:
    from sklearn.manifold import TSNE

    perplexity = float(min(30.0, max(1.0, (x.shape[0] - 1) / 3.0)))
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=int(seed),
                learning_rate="auto").fit_transform(x.astype(np.float32))


def projection_key(method: str, seed: int = 0, reproducible: bool = False) -> str:
    """The cache name of a projection: ``<method>-<seed>``; the fast (default) UMAP is
    ``umap-fast-<seed>`` so it never stands in for the reproducible one (``umap-<seed>``)."""
    if method == "umap" and not reproducible:
        return f"umap-fast-{int(seed)}"
    return f"{method}-{int(seed)}"


def project_2d(features, method: str = "pca", seed: int = 0, progress=None, cancelled=None, *,
               reproducible: bool = False, on_draft=None) -> np.ndarray:
    """(N, 2) float32 projection of features (N, F) by ``pca``, ``umap`` or ``tsne`` (see module).

    For UMAP, ``reproducible`` picks the seeded single-threaded layout, and ``on_draft(xy)``
    receives the fast path's quick draft layout before it is refined."""
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
        sub = report.sub(0.0, 0.99)
        xy = reproducible_umap(x, seed, sub) if reproducible else fast_umap(x, sub, on_draft)
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
