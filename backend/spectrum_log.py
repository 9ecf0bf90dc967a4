"""The run ledger's eigenspectrum readings: a bounded series of (step, top eigenvalues) per
spectrum event name (``spectrum`` for the projector, ``backbone_spectrum`` for the backbone).

A ``spectrum`` metric event (``backend.spectrum.spectrum_record``) has no scalar ``value``; the
ledger keeps its eigenvalues here and its ``alpha`` / ``rankme`` as the scalar series
``alpha_req`` / ``rankme`` (``backbone_alpha_req`` / ``backbone_rankme``). Plain Python and numpy.
"""

from __future__ import annotations

import math

import numpy as np

MAX_READINGS = 512   # readings kept per series (the oldest are thinned out beyond this)
SPECTRUM_NAMES = ("spectrum", "backbone_spectrum")


def scalar_names(name: str) -> tuple[str, str]:
    """The scalar series a spectrum event feeds: ('alpha_req', 'rankme') with its prefix."""
    prefix = name[:-len("spectrum")]
    return prefix + "alpha_req", prefix + "rankme"


def is_spectrum_event(event: dict) -> bool:
    """A metric event carrying an eigenvalue list (and no scalar value)."""
    return isinstance(event.get("values"), list) and not isinstance(event.get("value"), (int, float))


class SpectrumSeries:
    """Readings (step, eigenvalues) in step order, at most ``max_readings`` of them: when full,
    every other old reading is dropped, so a long run keeps an even coverage of its history."""

    def __init__(self, max_readings: int = MAX_READINGS):
        if max_readings < 2:
            raise ValueError(f"max_readings must be >= 2, got {max_readings}")
        self.max_readings = max_readings
        self.steps: list[int] = []
        self.values: list[list[float]] = []

    def __len__(self) -> int:
        return len(self.steps)

    def append(self, step: int, values) -> None:
        """Add one reading (non-numbers become NaN)."""
        clean = [float(v) if isinstance(v, (int, float)) and math.isfinite(v) else math.nan for v in values]
        self.steps.append(int(step))
        self.values.append(clean)
        if len(self.steps) > self.max_readings:
            keep = list(range(0, len(self.steps) - 1, 2)) + [len(self.steps) - 1]
            self.steps = [self.steps[i] for i in keep]
            self.values = [self.values[i] for i in keep]

    def truncate_after(self, cut: int) -> bool:
        """Keep only readings with step <= cut (the resume rule); True when something was dropped."""
        keep = [i for i, s in enumerate(self.steps) if s <= cut]
        if len(keep) == len(self.steps):
            return False
        self.steps = [self.steps[i] for i in keep]
        self.values = [self.values[i] for i in keep]
        return True

    def matrix(self) -> tuple[np.ndarray, np.ndarray]:
        """(steps (R,), eigenvalues (R, K)) with K the longest reading, NaN-padded; empty arrays
        when there is no reading."""
        if not self.steps:
            return np.zeros(0, np.int64), np.zeros((0, 0))
        k = max(len(v) for v in self.values)
        out = np.full((len(self.values), k), np.nan)
        for i, v in enumerate(self.values):
            out[i, :len(v)] = v
        return np.asarray(self.steps, np.int64), out
