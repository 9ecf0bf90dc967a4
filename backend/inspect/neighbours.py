"""Nearest neighbours in embedding space (cosine similarity)."""

from __future__ import annotations

import numpy as np


def nearest_neighbours(features, index: int, k: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` rows of ``features`` (N, F) most cosine-similar to row ``index``, itself first.

    Returns (indices int64 (k,), similarities float32 (k,)), most similar first; ``k`` is clamped
    to N. The query row is always first (even when exact duplicates exist); ties among the others
    are broken by the lower index.
    """
    if hasattr(features, "detach"):
        features = features.detach().cpu().numpy()
    x = np.asarray(features, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"features must be (N, F), got shape {x.shape}")
    n = x.shape[0]
    index = int(index)
    if not 0 <= index < n:
        raise IndexError(f"index {index} is out of range for {n} embeddings")
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    sims = x @ x[index]
    k = max(1, min(int(k), n))
    order = np.lexsort((np.arange(n), -sims))        # by similarity, then by index
    order = order[order != index][: k - 1]
    idx = np.concatenate([[index], order]).astype(np.int64)
    return idx, sims[idx].astype(np.float32)
