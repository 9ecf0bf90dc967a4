"""Pure step -> value schedules used by the recipes (no torch state): cosine ramps, epoch counting,
DINO's teacher-temperature warm-up."""

from __future__ import annotations

import math


def cosine_ramp(step: float, total_steps: float, start: float, end: float) -> float:
    """Half-cosine from ``start`` (step 0) to ``end`` (step ``total_steps`` and after).

    DINO's ``cosine_scheduler`` without warm-up: ``end + (start - end) * (1 + cos(pi * step / total)) / 2``;
    used for its weight-decay ramp (0.04 -> 0.4) and the teacher EMA momentum (0.996 -> 1).
    """
    if total_steps <= 0:
        raise ValueError(f"total_steps must be positive, got {total_steps}")
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    progress = min(1.0, step / total_steps)
    return end + (start - end) * 0.5 * (1 + math.cos(math.pi * progress))


def epoch_at(step: int, steps_per_epoch: int) -> float:
    """The current epoch as a float (``step / steps_per_epoch``): 0.5 is halfway through the first epoch.

    Recipes that count in epochs (DINO's last-layer freeze and teacher-temperature warm-up) compare
    against this, so a run shortened by ``max_steps`` still freezes for the same number of epochs.
    """
    if steps_per_epoch <= 0:
        raise ValueError(f"steps_per_epoch must be positive, got {steps_per_epoch}")
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    return step / steps_per_epoch


def dino_teacher_temp(epoch: int, warmup_temp: float, temp: float, warmup_epochs: int) -> float:
    """DINO's teacher temperature in (whole) ``epoch``: ``linspace(warmup_temp, temp, warmup_epochs)``
    indexed by the epoch during the warm-up, ``temp`` afterwards (so the last warm-up epoch already
    uses ``temp``; with one warm-up epoch it is ``warmup_temp``)."""
    if epoch < 0 or warmup_epochs < 0:
        raise ValueError(f"epoch and warmup_epochs must be >= 0, got {epoch}, {warmup_epochs}")
    if epoch >= warmup_epochs:
        return temp
    if warmup_epochs == 1:
        return warmup_temp
    return warmup_temp + (temp - warmup_temp) * epoch / (warmup_epochs - 1)


def last_layer_frozen(step: int, steps_per_epoch: int, freeze_epochs: float) -> bool:
    """True while DINO's head output layer stays frozen: during the first ``freeze_epochs`` epochs
    (DINO: ``epoch < freeze_last_layer``, whole epochs)."""
    return epoch_at(step, steps_per_epoch) < freeze_epochs
