"""Reproducible index sampling the sources share: derived random generators, class-balanced
subsets and held-out splits (numpy only)."""

from __future__ import annotations

import zlib

import numpy as np


def derive_rng(seed: int, *tags) -> np.random.Generator:
    """An independent, reproducible numpy Generator for (seed, purpose tags)."""
    words = [int(seed)] + [t if isinstance(t, int) else zlib.crc32(str(t).encode()) for t in tags]
    return np.random.default_rng(words)


def balanced_subset(labels: np.ndarray | None, n: int, limit: int,
                    rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of a random subset of ``limit`` of ``n`` items (all when limit is 0 or >= n).

    With labels, classes are taken round-robin in a random order, so every class gets
    ``limit // num_classes`` items (or all it has) and the remainder goes to random classes."""
    if limit <= 0 or limit >= n:
        return np.arange(n)
    if labels is None:
        return np.sort(rng.permutation(n)[:limit])
    order = rng.permutation(n)
    lab = np.asarray(labels)[order]
    by_class = np.argsort(lab, kind="stable")
    counts = np.bincount(lab)
    starts = np.cumsum(counts) - counts
    rank = np.empty(n, dtype=np.int64)
    rank[by_class] = np.arange(n) - np.repeat(starts, counts)   # position within its class
    pick = np.lexsort((np.arange(n), rank))[:limit]              # rank first, random tie-break
    return np.sort(order[pick])


def holdout_split(labels: np.ndarray | None, n: int, fraction: float,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Sorted (train, test) indices holding out ``fraction`` of each class (or of all, unlabelled).

    Every class with at least two items keeps at least one on each side when fraction > 0."""
    groups = [np.arange(n)] if labels is None else [np.flatnonzero(labels == c)
                                                    for c in np.unique(labels)]
    train, test = [], []
    for members in groups:
        members = rng.permutation(members)
        k = int(round(len(members) * fraction))
        if fraction > 0 and len(members) >= 2:
            k = min(max(k, 1), len(members) - 1)
        test.append(members[:k])
        train.append(members[k:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))
