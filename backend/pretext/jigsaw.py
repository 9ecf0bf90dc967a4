"""Jigsaw puzzles (Noroozi & Favaro 2016, "Unsupervised learning of visual representations by
solving jigsaw puzzles").

The 9 tiles of a jittered 3 x 3 grid (:func:`.patches.grid_tiles`; at 32 px: 8 px tiles in 10 px
cells) are shuffled by one permutation of a fixed set and the network predicts which (cross
entropy over the permutation index, ``F.cross_entropy(logits, labels)``). The set is chosen by the
paper's greedy algorithm (its Algorithm 1): start from a random permutation, then repeatedly add
the permutation whose average Hamming distance to those chosen is largest (``criterion="mean"``,
the paper's; ``"min"`` maximises the minimum distance instead). Ties go to the first in
lexicographic order, the start comes from ``seed``: the set is deterministic. The paper's best
setting is 1000 permutations; 100 is the default here (a 32 px tile carries little evidence).
Measured with seed 0: 100 by "mean" -> mean distance 8.08, minimum 2; 1000 by "mean" -> 8.008
and 2; 100 by "min" -> mean 8.03, minimum 6 (the average criterion does not keep pairs apart).

Convention: ``shuffled[n, i] = tiles[n, perms[label[n], i]]`` (output position i shows tile
``perms[label, i]``); :func:`unshuffle` inverts it. Per-tile normalisation (:func:`normalise_tiles`,
the paper's counter to low-level shortcuts) is optional.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from .patches import grid_tiles

__all__ = ["TILES", "permutation_set", "hamming_stats", "shuffle_tiles", "unshuffle",
           "jigsaw_batch", "normalise_tiles"]

TILES = 9


@functools.lru_cache(maxsize=1)
def _all_permutations() -> np.ndarray:
    """All 9! permutations of the tiles as a (9!, 9) int8 array, in lexicographic order (the order
    of ``itertools.permutations``), built block by block: the permutations of ``range(k)`` are, for
    each first element, that element followed by the permutations of ``range(k - 1)`` mapped onto
    the remaining ones."""
    out = np.zeros((1, 0), dtype=np.int8)
    for size in range(1, TILES + 1):
        blocks = []
        for first in range(size):
            rest = np.delete(np.arange(size, dtype=np.int8), first)
            blocks.append(np.hstack([np.full((out.shape[0], 1), first, np.int8), rest[out]]))
        out = np.vstack(blocks)
    return out


@functools.lru_cache(maxsize=8)
def _select(count: int, seed: int, criterion: str) -> torch.Tensor:
    candidates = _all_permutations()
    columns = np.ascontiguousarray(candidates.T)   # (9, 9!): one contiguous row per tile position
    total = candidates.shape[0]
    generator = torch.Generator().manual_seed(seed)
    chosen = [int(torch.randint(0, total, (1,), generator=generator))]
    score = np.full(total, TILES + 1 if criterion == "min" else 0, dtype=np.int32)
    taken = -(2 ** 30)                      # a chosen permutation's score: never picked again
    score[chosen[0]] = taken
    for _ in range(count - 1):
        last = candidates[chosen[-1]]
        distance = np.zeros(total, dtype=np.int32)  # Hamming distance to the last pick
        for position in range(TILES):
            distance += columns[position] != last[position]
        if criterion == "mean":
            score += distance
        else:
            np.minimum(score, distance, out=score)
        pick = int(score.argmax())          # the first of the best: ties go to lexicographic order
        chosen.append(pick)
        score[pick] = taken
    return torch.from_numpy(candidates[chosen].astype(np.int64))


def permutation_set(count: int = 100, seed: int = 0, criterion: str = "mean") -> torch.Tensor:
    """(count, 9) long, distinct permutations of the 9 tiles, chosen greedily (module docstring).

    Selecting from all 9! = 362880 permutations costs one pass over them per pick (numpy, column by
    column: about 5 ms a pick on an idle 2-core CPU). Cached per (count, seed, criterion) in-process:
    a method should build its set once, at construction."""
    if criterion not in ("mean", "min"):
        raise ValueError(f"criterion must be 'mean' or 'min', got {criterion!r}")
    if not 2 <= count <= 362880:
        raise ValueError(f"count must be in [2, 9!], got {count}")
    return _select(count, seed, criterion).clone()


def hamming_stats(perms: torch.Tensor) -> tuple[int, float]:
    """(minimum, mean) Hamming distance over the distinct pairs of rows of ``perms`` (P, 9)."""
    distance = (perms[:, None, :] != perms[None, :, :]).sum(dim=2)
    upper = torch.triu(torch.ones_like(distance, dtype=torch.bool), diagonal=1)
    pairs = distance[upper]
    return int(pairs.min()), float(pairs.double().mean())


def shuffle_tiles(tiles: torch.Tensor, perms: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Shuffle (N, 9, C, t, t) tiles: ``out[n, i] = tiles[n, perms[labels[n], i]]``."""
    if tiles.dim() != 5 or tiles.shape[1] != perms.shape[1]:
        raise ValueError(f"tiles must be (N, {perms.shape[1]}, C, t, t), got {tuple(tiles.shape)}")
    order = perms.to(tiles.device)[labels.to(tiles.device)]          # (N, 9)
    index = order[:, :, None, None, None].expand_as(tiles)
    return tiles.gather(1, index)


def unshuffle(shuffled: torch.Tensor, perms: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`shuffle_tiles`: put every tile back in its cell."""
    order = perms.to(shuffled.device)[labels.to(shuffled.device)]
    inverse = torch.argsort(order, dim=1)
    return shuffled.gather(1, inverse[:, :, None, None, None].expand_as(shuffled))


def normalise_tiles(tiles: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Each tile to zero mean and unit standard deviation over its own pixels and channels."""
    mean = tiles.mean(dim=(-3, -2, -1), keepdim=True)
    std = tiles.std(dim=(-3, -2, -1), keepdim=True, unbiased=False)
    return (tiles - mean) / (std + eps)


def jigsaw_batch(x: torch.Tensor, perms: torch.Tensor, tile: int | None = None,
                 generator: torch.Generator | None = None,
                 normalise: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """A jigsaw batch from (N, C, H, W) images: shuffled tiles (N, 9, C, t, t) and the permutation
    index of each sample (N,) on the images' device, drawn uniformly from ``perms``."""
    tiles = grid_tiles(x, grid=3, tile=tile, generator=generator).tiles
    labels = torch.randint(0, perms.shape[0], (x.shape[0],), generator=generator)
    shuffled = shuffle_tiles(tiles, perms, labels)
    if normalise:
        shuffled = normalise_tiles(shuffled)
    return shuffled, labels.to(x.device)
