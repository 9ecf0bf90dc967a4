"""Collapse detection from the probe-batch metrics the trainer already computes.

Two kinds of collapse (Jing et al. 2022, "Understanding dimensional collapse"):

- complete collapse: every image maps to (nearly) the same point, so ``embedding_std`` (std over
  the batch of the L2-normalised projections, averaged over dimensions) falls towards 0; healthy
  is about ``1/sqrt(D)``, we warn below ``STD_FRACTION/sqrt(D)``;
- dimensional collapse: the projections span only a few directions (e.g. a rank-2 bottleneck).
  ``embedding_std`` can look healthy, but the RankMe ``effective_rank`` is tiny: we warn below
  ``min(RANK_FLOOR, RANK_SHARE * min(N, D))`` (N = probe batch size). The floor is absolute on
  purpose: healthy runs of every method start well above it (about 10-30 on the quick preset),
  while early DINO logits sit near 5-8 of 256 possible directions, so a relative level would
  cry wolf; a projector whose width itself is tiny is not flagged for being narrow.

``CollapseMonitor`` turns the per-evaluation readings into onset/recovery transitions, so the
trainer emits one warning per onset instead of one per evaluation. Pure Python, no I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

STD_FRACTION = 0.1    # complete collapse: embedding_std < 0.1 / sqrt(D)
RANK_FLOOR = 3.5      # dimensional collapse: effective rank below 3.5 (rank <= 3, bias included) ...
RANK_SHARE = 0.5      # ... or below half the largest possible rank min(N, D), when that is smaller
PATIENCE = 2          # consecutive collapsed evaluations before the warning (one noisy probe is not a trend)


def rank_threshold(probe_size: int, dim: int) -> float:
    """The effective rank below which the projections count as dimensionally collapsed."""
    return min(RANK_FLOOR, RANK_SHARE * min(probe_size, dim))


def collapse_reasons(embedding_std: float, effective_rank: float, dim: int, probe_size: int) -> list[str]:
    """Why the projections look collapsed (empty list when healthy); one clause per sign."""
    reasons = []
    std_level = STD_FRACTION / math.sqrt(dim)
    if math.isfinite(embedding_std) and embedding_std < std_level:
        reasons.append(f"embedding_std {embedding_std:.3g} < {std_level:.3g} "
                       f"(healthy is about 1/sqrt(D) = {1 / math.sqrt(dim):.3g} for D = {dim})")
    rank_level = rank_threshold(probe_size, dim)
    if math.isfinite(effective_rank) and effective_rank < rank_level:
        reasons.append(f"effective rank {effective_rank:.2f} < {rank_level:.3g} "
                       f"(the projections span only a few of their {min(probe_size, dim)} possible directions)")
    return reasons


def projection_dim(method, images) -> int:
    """Width D of ``method``'s projector output, from a forward pass of two images in eval mode
    (eval: batch-norm statistics are not touched; no randomness is drawn)."""
    import torch  # here, not at the top: the run ledger uses this module's rule without torch

    was_training = method.training
    method.eval()
    try:
        with torch.no_grad():
            return int(method.embed(images[:2])[1].shape[-1])
    finally:
        method.train(was_training)


@dataclass
class CollapseMonitor:
    """Tracks collapse across evaluations. ``update`` returns ``("collapse", message)`` at an onset
    (after ``PATIENCE`` collapsed evaluations in a row), ``("collapse_cleared", message)`` when a
    collapsed run looks healthy again, else None."""

    dim: int
    probe_size: int
    patience: int = PATIENCE
    collapsed: bool = False
    streak: int = 0

    def update(self, step: int, embedding_std: float, effective_rank: float) -> tuple[str, str] | None:
        """Feed one evaluation of the projector metrics at ``step``."""
        reasons = collapse_reasons(float(embedding_std), float(effective_rank), self.dim, self.probe_size)
        if reasons:
            self.streak += 1
            if not self.collapsed and self.streak >= self.patience:
                self.collapsed = True
                return "collapse", (f"representation collapse suspected at step {step}: "
                                    f"{'; '.join(reasons)}. Check the augmentations (too weak?), "
                                    f"the learning rate and the method's anti-collapse settings")
            return None
        self.streak = 0
        if self.collapsed:
            self.collapsed = False
            return "collapse_cleared", (f"the representation looks healthy again at step {step} "
                                        f"(embedding_std {embedding_std:.3g}, effective rank {effective_rank:.2f})")
        return None
