"""``cifar10``, ``cifar100``, ``stl10``: torchvision's downloaders, converted to uint8 tensors.

Files go to ``data.download_root`` (empty: ``~/.cache/sslwb/downloads``); torchvision verifies
them and downloads what is missing. Without a network that fails and we raise a DataError that
points at the ``imagefolder:<path>`` alternative. torchvision's progress prints are sent to
stderr, because the trainer's stdout carries JSON events.

STL-10: the train split is the 5,000 labelled ``train`` images; with ``data.stl10_unlabeled`` it is
``train+unlabeled`` (105,000 images, unlabelled: 2.9 GB as uint8 at 96 px, which torchvision reads
whole into memory once, when the cache is built; training then maps the cache); test is ``test``.
Images are resized (antialiased bilinear) when ``data.image_size`` differs from the native size.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import numpy as np

from ..errors import DataError
from .registry import source_spec
from .sampling import balanced_subset, derive_rng
from .types import Decoded, Plan

DEFAULT_DOWNLOAD_ROOT = "~/.cache/sslwb/downloads"
NATIVE_SIZE = {"cifar10": 32, "cifar100": 32, "stl10": 96}
_INFO = {
    "cifar10": "CIFAR-10: 50,000 train / 10,000 test photos, 10 classes, 32 px",
    "cifar100": "CIFAR-100: 50,000 train / 10,000 test photos, 100 classes, 32 px",
    "stl10": "STL-10: 5,000 labelled train / 8,000 test photos, 10 classes, 96 px",
}


def download_root(cfg) -> Path:
    """Where torchvision data sets are downloaded for a DataConfig."""
    return Path(cfg.download_root or DEFAULT_DOWNLOAD_ROOT).expanduser()


def describe(ref) -> str:
    """One line about a torchvision source."""
    return f"{_INFO[ref.kind]} (torchvision download)"


def num_classes(ref, cfg=None) -> int:
    """The fixed class count of a torchvision source."""
    return source_spec(ref.kind).num_classes


def plan(cfg, ref, split: str, seed: int, limit: int, **_hooks) -> Plan:
    """Key the cache on (name, split, size, limit); download and convert only on a miss."""
    name = ref.kind
    size = int(cfg.image_size)
    unlabeled = name == "stl10" and split == "train" and bool(getattr(cfg, "stl10_unlabeled", False))
    key = {"source": name, "split": split, "size": size, "limit": limit,
           "seed": int(seed) if limit > 0 else None, **({"unlabeled": True} if unlabeled else {})}

    def build():
        images, labels, classes = _open(name, download_root(cfg), "train+unlabeled" if unlabeled else split)
        if unlabeled:
            labels, classes = None, []           # 100,000 of the 105,000 have no label (-1)
        index = balanced_subset(labels, len(images), limit, derive_rng(seed, "limit", split))
        images = images[index]
        if images.shape[-1] != size:
            images = resize_uint8(images, size)
        return Decoded(np.ascontiguousarray(images), None if labels is None else labels[index].astype(np.int64),
                       list(classes))

    return Plan(key=key, label=name + ("-unlabeled" if unlabeled else ""), build=build)


def _open(name: str, root: Path, split: str):
    """(uint8 images N,3,H,W; int64 labels; class names) from torchvision, downloading if needed."""
    import torchvision.datasets as tvd

    try:
        with contextlib.redirect_stdout(sys.stderr):
            if name == "cifar10":
                ds = tvd.CIFAR10(str(root), train=split == "train", download=True)
            elif name == "cifar100":
                ds = tvd.CIFAR100(str(root), train=split == "train", download=True)
            else:
                ds = tvd.STL10(str(root), split=split, download=True)
    except Exception as exc:  # noqa: BLE001 - no network, refused, corrupt archive, full disk...
        raise DataError(
            f"could not download {name} to {root} (offline?); put the images in a class-per-folder "
            f"tree and use data.source = 'imagefolder:<path>'") from exc
    if name == "stl10":
        images = np.asarray(ds.data, dtype=np.uint8)                      # already N,3,H,W
        labels = np.asarray(ds.labels, dtype=np.int64)
    else:
        images = np.asarray(ds.data, dtype=np.uint8).transpose(0, 3, 1, 2)  # N,H,W,3 -> N,3,H,W
        labels = np.asarray(ds.targets, dtype=np.int64)
    return images, labels, list(ds.classes)


def resize_uint8(images: np.ndarray, size: int, *, chunk: int = 1024) -> np.ndarray:
    """Resize uint8 (N, 3, H, W) square images to (N, 3, size, size), antialiased bilinear."""
    import torch
    import torch.nn.functional as F

    out = np.empty((images.shape[0], 3, size, size), dtype=np.uint8)
    for start in range(0, images.shape[0], chunk):
        x = torch.from_numpy(np.ascontiguousarray(images[start:start + chunk])).float()
        y = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        out[start:start + chunk] = y.round_().clamp_(0, 255).to(torch.uint8).numpy()
    return out
