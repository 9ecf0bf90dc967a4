"""One metric's points in growable numpy buffers (the run ledger's series; no Qt, no torch)."""

from __future__ import annotations

import numpy as np

INITIAL_CAPACITY = 256
COLUMNS = ("step", "epoch", "value", "time")


class Series:
    """One metric's points (step, epoch, value, time) in numpy buffers whose capacity doubles."""

    __slots__ = ("step", "epoch", "value", "time", "n")

    def __init__(self, capacity: int = INITIAL_CAPACITY):
        self.step = np.empty(capacity, np.int64)
        self.epoch = np.empty(capacity, np.int64)
        self.value = np.empty(capacity, np.float64)
        self.time = np.empty(capacity, np.float64)
        self.n = 0

    def __len__(self) -> int:
        return self.n

    def append(self, step: int, epoch: int, value: float, t: float) -> None:
        """Add one point, doubling the buffers when full."""
        n = self.n
        if n == len(self.value):
            self._reallocate(np.arange(n), 2 * n)
        self.step[n] = step
        self.epoch[n] = epoch
        self.value[n] = value
        self.time[n] = t
        self.n = n + 1

    def _reallocate(self, keep: np.ndarray, capacity: int) -> None:
        for key in COLUMNS:
            old = getattr(self, key)
            new = np.empty(max(capacity, INITIAL_CAPACITY), old.dtype)
            new[:len(keep)] = old[keep]
            setattr(self, key, new)
        self.n = len(keep)

    def truncate_after(self, cut: int) -> bool:
        """Keep only points with step <= cut (the resume rule); True when something was dropped.
        Fresh buffers are allocated so arrays already handed to a plot are never rewritten."""
        keep = np.flatnonzero(self.step[:self.n] <= cut)
        if len(keep) == self.n:
            return False
        self._reallocate(keep, len(self.value))
        return True

    @property
    def steps(self) -> np.ndarray:
        """Steps of the points so far (a view)."""
        return self.step[:self.n]

    @property
    def epochs(self) -> np.ndarray:
        """Epochs (0-based, as emitted) of the points so far (a view)."""
        return self.epoch[:self.n]

    @property
    def values(self) -> np.ndarray:
        """Values so far (a view; NaN where the trainer sent a non-finite value)."""
        return self.value[:self.n]

    @property
    def times(self) -> np.ndarray:
        """Event wall-clock times of the points so far (a view)."""
        return self.time[:self.n]

    def last(self) -> float | None:
        """The latest value, or None when empty."""
        return float(self.value[self.n - 1]) if self.n else None
