"""Class-balanced label subsets."""

import numpy as np
import pytest

from backend.errors import DataError
from backend.label_subsets import balanced_subset, per_class_count


def test_balanced_and_seeded():
    labels = np.repeat(np.arange(10), 500)  # CIFAR-like: 10 classes x 500
    one = balanced_subset(labels, 0.01, seed=0)
    assert np.bincount(labels[one], minlength=10).tolist() == [5] * 10
    assert np.bincount(labels[balanced_subset(labels, 0.1, 1)]).tolist() == [50] * 10
    assert np.array_equal(one, balanced_subset(labels, 0.01, seed=0))
    assert not np.array_equal(one, balanced_subset(labels, 0.01, seed=1))
    assert np.all(np.diff(one) > 0)
    assert np.array_equal(balanced_subset(labels, 1.0), np.arange(len(labels)))


def test_at_least_one_per_class_and_capped():
    labels = np.array([0] * 1000 + [1] * 3 + [2] * 1)
    idx = balanced_subset(labels, 0.01, seed=0)
    assert per_class_count(1004, 3, 0.01) == 3
    assert np.bincount(labels[idx]).tolist() == [3, 3, 1]
    assert balanced_subset(np.arange(5), 0.001).tolist() == [0, 1, 2, 3, 4]


def test_bad_input():
    with pytest.raises(DataError, match=r"in \(0, 1\]"):
        balanced_subset([0, 1], 0.0)
    with pytest.raises(DataError, match="integer class labels"):
        balanced_subset([0.5, 1.0], 0.5)
