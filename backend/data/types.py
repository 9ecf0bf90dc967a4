"""Types the data sources share: the decoded split (``ImageDataset``), what a source module
returns (``Plan``, ``Decoded``), and a source's declaration (``SourceSpec``, ``SourceRef``).

A leaf module (standard library only, annotations are strings): the registry, the source
modules and ``sources.load_dataset`` all import it, none of them imports another.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, NamedTuple

if TYPE_CHECKING:  # annotations only: importing this module imports neither
    import numpy as np
    import torch


@dataclass
class ImageDataset:
    """A decoded split: uint8 images (N, 3, S, S) with optional int64 labels (N,)."""

    images: torch.Tensor
    labels: torch.Tensor | None
    class_names: list[str]
    source: str
    split: str
    skipped: list[tuple[str, str]] = field(default_factory=list)
    images_path: str = ""              # the cache's images.npy when ``images`` maps it (else '')

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
    # Optional: decode straight into the cache. Called with ``allocate(n)`` (a writable uint8
    # (n, 3, S, S) memory map of the new entry's images.npy); returns a Decoded whose images are
    # that map (or the compacted map when files were skipped). A data set larger than RAM is
    # never held whole. ``load_dataset`` falls back to ``build`` when the cache cannot be written.
    build_into: Callable | None = None


@dataclass(frozen=True)
class SourceSpec:
    """A data source kind. ``takes_path``: written ``<name>:<path>``; ``loader``: the module of
    ``backend.data`` that implements it (imported only when data is loaded, described or
    checked); ``downloads``: fetched into ``data.download_root``; ``num_classes``: fixed class
    count (None: the loader tells, or unlabelled); ``reads``: ``data.*`` fields only this kind
    uses (the editor shows them only for it)."""

    name: str
    label: str
    help: str
    loader: str
    takes_path: bool = False
    downloads: bool = False
    num_classes: int | None = None
    reads: tuple = ()

    @property
    def syntax(self) -> str:
        """How a config spells it: 'cifar10' or 'imagefolder:<path>'."""
        return f"{self.name}:<path>" if self.takes_path else self.name


class SourceRef(NamedTuple):
    """A parsed ``data.source``: the kind's name and its argument (the path, or '')."""

    kind: str
    arg: str
