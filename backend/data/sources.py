"""Data sources -> one uint8 image tensor per split, decoded once and cached on disk.

``load_dataset(cfg, split)`` is the single entry point. A source spec (``cfg.source``) names where
the images come from:

- ``synthetic``: procedurally drawn shape classes (``synthetic.py``), no files needed;
- ``imagefolder:<path>``: a folder of images (``imagefolder.py``), class-per-folder or flat;
- ``cifar10``, ``cifar100``, ``stl10``: torchvision downloads (``torchvision_sets.py``).

Each source module turns the spec into a :class:`Plan`: a cache key (everything the pixels depend
on) and a ``build`` function that decodes. ``load_dataset`` looks the key up in the cache
(``cache.py``) and only calls ``build`` on a miss, so no run after the first decodes an image.
"""

from __future__ import annotations

import logging
import zlib
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from ..errors import DataError
from . import cache

SPLITS = ("train", "test")
TORCHVISION_SOURCES = ("cifar10", "cifar100", "stl10")
SOURCE_CHOICES = "synthetic, imagefolder:<path>, cifar10, cifar100 or stl10"
_MAX_NAMED = 5  # skipped files named in a warning

log = logging.getLogger("backend.data")


@dataclass
class ImageDataset:
    """A decoded split: uint8 images (N, 3, S, S) with optional int64 labels (N,)."""

    images: torch.Tensor
    labels: torch.Tensor | None
    class_names: list[str]
    source: str
    split: str
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def labelled(self) -> bool:
        """Whether every image has a class label."""
        return self.labels is not None

    @property
    def num_classes(self) -> int:
        """Number of classes (0 for unlabelled data)."""
        return len(self.class_names)

    @property
    def image_size(self) -> int:
        """Side length S of the square images."""
        return int(self.images.shape[-1])


@dataclass
class Decoded:
    """What a source's ``build`` returns (numpy, before caching)."""

    images: np.ndarray                 # uint8 (N, 3, S, S), C-contiguous
    labels: np.ndarray | None          # int64 (N,)
    class_names: list[str]
    skipped: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class Plan:
    """A source resolved for one split: its cache key and how to decode it on a cache miss."""

    key: dict                          # JSON-serialisable; every input the pixels depend on
    label: str                         # readable prefix of the cache entry's folder name
    build: Callable[[], Decoded]


def parse_source(spec: str) -> tuple[str, str]:
    """Split a spec into (kind, argument): ('imagefolder', '/x'), ('cifar10', ''), ...

    Raises DataError for an unknown source."""
    text = str(spec).strip()
    if text.lower().startswith("imagefolder:") and text[len("imagefolder:"):].strip():
        return "imagefolder", text[len("imagefolder:"):].strip()
    if text.lower() in ("synthetic",) + TORCHVISION_SOURCES:
        return text.lower(), ""
    raise DataError(f"unknown data source {text!r}; data.source must be {SOURCE_CHOICES}")


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


def load_dataset(cfg, split: str, *, seed: int = 0, on_warning=None, on_skipped=None,
                 on_progress=None, cancelled=None) -> ImageDataset:
    """Load split 'train' or 'test' of ``cfg.source`` (a DataConfig) as uint8 tensors.

    Decodes on the first call and reads the on-disk cache afterwards. ``seed`` fixes synthetic
    images, held-out splits of image folders and ``train_limit``/``test_limit`` subsets.
    ``on_warning(message)`` receives one-sentence warnings (e.g. skipped unreadable files);
    without it they go to the ``backend.data`` logger. ``on_skipped(message, skipped)``, when
    given, receives the skipped-files report instead of ``on_warning``: the sentence plus every
    (relative path, reason) pair (the sentence names only the first few). Image folders report
    decoding progress to ``on_progress(fraction, text)`` and stop with ``backend.errors.Cancelled``
    once ``cancelled()`` returns True. Raises DataError naming the path or source when the data
    is missing, empty, unreadable or cannot be downloaded."""
    if split not in SPLITS:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    cfg = getattr(cfg, "data", cfg)          # an ExperimentConfig works too
    warn = on_warning or log.warning
    kind, arg = parse_source(cfg.source)
    limit = int(cfg.train_limit if split == "train" else cfg.test_limit)
    if kind == "synthetic":
        from . import synthetic
        plan = synthetic.plan(cfg, split, seed, limit)
    elif kind == "imagefolder":
        from . import imagefolder
        plan = imagefolder.plan(cfg, arg, split, seed, limit, warn, on_progress=on_progress,
                                cancelled=cancelled)
    else:
        from . import torchvision_sets
        plan = torchvision_sets.plan(cfg, kind, split, seed, limit)

    root = cache.cache_root(cfg)
    name = cache.entry_name(plan.label, split, cfg.image_size, plan.key)
    entry = cache.load_entry(root, name, plan.key, cfg.image_size)
    if entry is not None:
        images, labels, meta = entry
        data = Decoded(images, labels, list(meta["class_names"]),
                       [tuple(s) for s in meta["skipped"]])
    else:
        data = plan.build()
        try:
            cache.save_entry(root, name, plan.key, data.images, data.labels,
                             {"class_names": data.class_names, "skipped": data.skipped,
                              "source": str(cfg.source), "split": split})
        except OSError as exc:
            warn(f"could not write the data cache in {root} ({exc.strerror or exc}); "
                 f"the images will be decoded again next time")
    if data.skipped:
        message = skipped_message(data.skipped, cfg.source, split)
        if on_skipped is not None:
            on_skipped(message, [tuple(s) for s in data.skipped])
        else:
            warn(message)
    labels_t = None if data.labels is None else torch.from_numpy(np.ascontiguousarray(data.labels))
    return ImageDataset(images=torch.from_numpy(np.ascontiguousarray(data.images)), labels=labels_t,
                        class_names=list(data.class_names), source=str(cfg.source), split=split,
                        skipped=list(data.skipped))


FIXED_NUM_CLASSES = {"cifar10": 10, "cifar100": 100, "stl10": 10}


def known_num_classes(cfg) -> int | None:
    """Number of classes of ``cfg.source`` (a DataConfig or ExperimentConfig) without decoding an
    image: fixed for the synthetic and torchvision sources, the class folders of an image folder;
    None when unlabelled or the folder cannot be read."""
    kind, arg = parse_source(getattr(cfg, "data", cfg).source)
    if kind == "synthetic":
        from .synthetic import CLASS_NAMES
        return len(CLASS_NAMES)
    if kind == "imagefolder":
        from .imagefolder import class_names
        try:
            return len(class_names(arg)) or None
        except DataError:
            return None
    return FIXED_NUM_CLASSES[kind]


def skipped_message(skipped: list, source: str, split: str = "") -> str:
    """One sentence naming the first few skipped files and why they were skipped."""
    named = ", ".join(f"{f} ({why})" for f, why in skipped[:_MAX_NAMED])
    more = f" and {len(skipped) - _MAX_NAMED} more" if len(skipped) > _MAX_NAMED else ""
    noun = "image" if len(skipped) == 1 else "images"
    where = f" ({split} split)" if split else ""
    return f"skipped {len(skipped)} unreadable {noun} in {source}{where}: {named}{more}"


def check_source(spec) -> str | None:
    """A quick check, before any trainer starts, that a data source can be read: None when it
    looks usable, else the DataError sentence (path, problem, likely fix). For image folders it
    lists the top level and stops at the first image of every class folder (no decoding); the
    torchvision sources and synthetic data are not checked here (they download or generate)."""
    spec = getattr(getattr(spec, "data", spec), "source", spec)
    try:
        kind, arg = parse_source(spec)
        if kind == "imagefolder":
            from .imagefolder import class_names
            class_names(arg)
    except DataError as exc:
        return str(exc)
    return None


def describe_source(spec) -> str:
    """A one-line human description of a data source spec (a string or anything with .source)."""
    spec = getattr(spec, "source", spec)
    try:
        kind, arg = parse_source(spec)
    except DataError:
        return f"unknown data source {str(spec)!r} (use {SOURCE_CHOICES})"
    if kind == "synthetic":
        return ("Synthetic shapes: 10 procedurally drawn shape/pattern classes with random colours "
                "(generated, no files needed)")
    if kind == "imagefolder":
        from .imagefolder import describe
        return describe(arg)
    from .torchvision_sets import describe
    return describe(kind)
