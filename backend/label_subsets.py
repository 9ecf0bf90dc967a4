"""Class-balanced label subsets for semi-supervised evaluation (the 1 % / 10 % protocols).

:func:`balanced_subset` takes the *same number* of images from every class:
``k = max(1, round(fraction * N / C))`` (N labelled images, C classes present), capped at a
class's own count when it has fewer. On CIFAR-10's 50 000 train images: 1 % -> 50 per class
(500 in all), 10 % -> 500 per class (5 000). Which images: a permutation of each class drawn from
``numpy.random.default_rng(seed)`` (classes in sorted order), so a seed names the subset.
"""

from __future__ import annotations

import numpy as np

from .errors import DataError


def per_class_count(n_labels: int, n_classes: int, fraction: float) -> int:
    """Images taken per class: max(1, round(fraction * n_labels / n_classes))."""
    return max(1, int(round(fraction * n_labels / max(n_classes, 1))))


def balanced_subset(labels, fraction: float, seed: int = 0) -> np.ndarray:
    """Sorted indices of a class-balanced subset of ``labels`` (ints >= 0) holding ``fraction``
    of them (see the module doc for the exact counts); at least one image per class."""
    labels = np.asarray(labels)
    if not 0.0 < float(fraction) <= 1.0:
        raise DataError(f"label fraction must be in (0, 1], got {fraction}")
    if labels.ndim != 1 or labels.size == 0:
        raise DataError(f"label subset needs a non-empty 1-D array of labels, got shape {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0:
        raise DataError("label subset needs integer class labels >= 0")
    if fraction == 1.0:
        return np.arange(labels.size)
    classes = np.unique(labels)
    k = per_class_count(labels.size, len(classes), float(fraction))
    rng = np.random.default_rng(seed)
    picked = [rng.permutation(np.flatnonzero(labels == c))[:k] for c in classes]
    return np.sort(np.concatenate(picked))
