"""Data sources -> one uint8 image tensor per split, decoded once and cached on disk.

``load_dataset(cfg, split)`` is the single entry point. A source spec (``cfg.source``) names where
the images come from; the kinds are listed once in ``registry.SOURCES``:

- ``synthetic``: procedurally drawn shape classes (``synthetic.py``), no files needed;
- ``imagefolder:<path>``: a folder of images (``imagefolder.py``), class-per-folder or flat;
- ``cifar10``, ``cifar100``, ``stl10``: torchvision downloads (``torchvision_sets.py``).

Each source's loader module turns the spec into a :class:`Plan`: a cache key (everything the
pixels depend on) and a ``build`` function that decodes. ``load_dataset`` looks the key up in the
cache (``cache.py``) and only calls ``build`` on a miss, so no run after the first decodes an image.
The loader modules import only the leaf modules ``types``, ``sampling`` and ``registry``.
"""

from __future__ import annotations

import logging
import shutil
import warnings

import numpy as np
import torch

from .. import faults
from . import cache
from .registry import SOURCES, check_source, describe_source, known_num_classes, loader, parse_source
from .sampling import balanced_subset, derive_rng, holdout_split
from .types import Decoded, ImageDataset, Plan

__all__ = ["SOURCES", "Decoded", "ImageDataset", "Plan", "balanced_subset", "check_source", "derive_rng",
           "describe_source", "holdout_split", "known_num_classes", "load_dataset", "parse_source",
           "skipped_message"]

SPLITS = ("train", "test")
MAX_NAMED = 5  # skipped files named in a warning

log = logging.getLogger("backend.data")


def load_dataset(cfg, split: str, *, seed: int = 0, on_warning=None, on_skipped=None,
                 on_progress=None, cancelled=None, mmap: bool = False) -> ImageDataset:
    """Load split 'train' or 'test' of ``cfg.source`` (a DataConfig) as uint8 tensors.

    Decodes on the first call and reads the on-disk cache afterwards. ``seed`` fixes synthetic
    images, held-out splits of image folders and ``train_limit``/``test_limit`` subsets.
    ``on_warning(message)`` receives one-sentence warnings (e.g. skipped unreadable files);
    without it they go to the ``backend.data`` logger. ``on_skipped(message, skipped)``, when
    given, receives the skipped-files report instead of ``on_warning``: the sentence plus every
    (relative path, reason) pair (the sentence names only the first few). Image folders report
    decoding progress to ``on_progress(fraction, text)`` and stop with ``backend.errors.Cancelled``
    once ``cancelled()`` returns True. Raises DataError naming the path or source when the data
    is missing, empty, unreadable or cannot be downloaded. ``mmap=True``: the images are the
    cache's ``images.npy`` memory-mapped read-only (a CPU tensor over the map, nothing read until
    touched; data larger than RAM), also right after a cache miss (the decoded copy is dropped);
    the default reads them into memory."""
    if split not in SPLITS:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    cfg = getattr(cfg, "data", cfg)          # an ExperimentConfig works too
    warn = on_warning or log.warning
    ref = parse_source(cfg.source)
    limit = int(cfg.train_limit if split == "train" else cfg.test_limit)
    plan = loader(ref).plan(cfg, ref, split, seed, limit, warn=warn, on_progress=on_progress,
                            cancelled=cancelled)

    root = cache.cache_root(cfg)
    name = cache.entry_name(plan.label, split, cfg.image_size, plan.key)
    entry = cache.load_entry(root, name, plan.key, cfg.image_size, mmap=mmap)
    if entry is not None:
        images, labels, meta = entry
        data = Decoded(images, labels, list(meta["class_names"]),
                       [tuple(s) for s in meta["skipped"]])
    else:
        meta = {"source": str(cfg.source), "split": split}
        data = _build_in_cache(plan, root, name, cfg.image_size, meta, mmap, warn) \
            if plan.build_into is not None else None
        if data is None:
            data = plan.build()
            try:
                cache.save_entry(root, name, plan.key, data.images, data.labels,
                                 {"class_names": data.class_names, "skipped": data.skipped, **meta})
            except OSError as exc:
                warn(f"could not write the data cache in {root} ({exc.strerror or exc}); "
                     f"the images will be decoded again next time")
            else:
                mapped = cache.load_entry(root, name, plan.key, cfg.image_size, mmap=True) if mmap else None
                if mapped is not None:
                    data.images = mapped[0]        # the decoded copy in RAM is freed
    if data.skipped:
        message = skipped_message(data.skipped, cfg.source, split)
        if on_skipped is not None:
            on_skipped(message, [tuple(s) for s in data.skipped])
        else:
            warn(message)
    labels_t = None if data.labels is None else torch.from_numpy(np.ascontiguousarray(data.labels))
    mapped_file = str(data.images.filename) if isinstance(data.images, np.memmap) and data.images.filename else ""
    return ImageDataset(images=_as_tensor(data.images), labels=labels_t,
                        class_names=list(data.class_names), source=str(cfg.source), split=split,
                        skipped=list(data.skipped), images_path=mapped_file)


def _build_in_cache(plan: Plan, root, name: str, size: int, meta: dict, mmap: bool, warn) -> Decoded | None:
    """Decode with ``plan.build_into`` straight into a new cache entry and commit it; the entry
    read back (mapped when ``mmap``). None, after a warning, when the cache cannot be written
    (then the caller decodes into memory). Cancelled and DataError propagate (no entry is left)."""
    try:
        if faults.disk_full("cache"):
            raise faults.enospc()
        tmp = cache.begin_entry(root, name)
    except OSError as exc:
        warn(f"could not write the data cache in {root} ({exc.strerror or exc}); "
             f"the images will be decoded again next time")
        return None
    from .parallel_decode import open_image_memmap    # imports PIL: only when decoding

    try:
        data = plan.build_into(lambda n: open_image_memmap(tmp / "images.npy", n, size, reserve=True))
        n = int(data.images.shape[0])
        data.images = None                   # unmap before the folder is renamed
        cache.commit_entry(root, name, tmp, plan.key, data.labels,
                           {"class_names": data.class_names, "skipped": data.skipped, **meta}, n)
    except OSError as exc:
        warn(f"could not write the data cache in {root} ({exc.strerror or exc}); decoding into memory "
             f"instead, and the images will be decoded again next time")
        return None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    entry = cache.load_entry(root, name, plan.key, size, mmap=mmap)
    if entry is None:
        return None
    return Decoded(entry[0], data.labels, data.class_names, data.skipped)


def _as_tensor(images: np.ndarray) -> torch.Tensor:
    """A uint8 tensor sharing the array's memory (a read-only memory map too: never written)."""
    if isinstance(images, np.memmap) and not images.flags.writeable:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)   # "non-writable array": we only read it
            return torch.from_numpy(images)
    return torch.from_numpy(np.ascontiguousarray(images))


def skipped_message(skipped: list, source: str, split: str = "") -> str:
    """One sentence naming the first few skipped files and why they were skipped."""
    named = ", ".join(f"{f} ({why})" for f, why in skipped[:MAX_NAMED])
    more = f" and {len(skipped) - MAX_NAMED} more" if len(skipped) > MAX_NAMED else ""
    noun = "image" if len(skipped) == 1 else "images"
    where = f" ({split} split)" if split else ""
    return f"skipped {len(skipped)} unreadable {noun} in {source}{where}: {named}{more}"
