"""Augmented views of training images, drawn with a run's own augmentation settings."""

from __future__ import annotations

import numpy as np
import torch


def augmentation_pairs(run_dir, indices, seed: int = 0, split: str = "train", *, checkpoint=None,
                       num_views: int | None = None):
    """(originals uint8 (n, 3, S, S), views: list of float32 (n, 3, s, s) tensors in [0, 1]).

    The views are what the run's ``ViewGenerator`` (its AugmentConfig and image size) makes of the
    images at ``indices`` of ``split``: the global views first, then the local ones; ``num_views``
    keeps the first few. The same ``seed`` gives the same views. The config is the run's
    config.json, or the one stored in ``checkpoint`` when the folder has none.
    """
    from ..data.augment import ViewGenerator
    from ..data.sources import load_dataset
    from .common import run_config

    cfg = run_config(run_dir, checkpoint)
    data = load_dataset(cfg.data, split, seed=cfg.runtime.seed)
    idx = torch.as_tensor(np.asarray(indices, dtype=np.int64).reshape(-1))
    if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= len(data)):
        raise IndexError(f"indices must be in [0, {len(data)}) for the {split} split")
    originals = data.images[idx]
    generator = torch.Generator().manual_seed(int(seed))
    views, _ = ViewGenerator(cfg.augment, cfg.data.image_size).sample(originals, generator=generator)
    if num_views is not None:
        views = views[: max(1, int(num_views))]
    return originals, views
