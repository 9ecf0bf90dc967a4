"""The one list of data source kinds (torch-free): config validation, CLI help, ``load_dataset``
and the GUI's source picker all read ``SOURCES``.

Each ``SourceSpec`` names its loader module lazily. A loader module provides
``plan(cfg, ref, split, seed, limit, *, warn, on_progress, cancelled) -> Plan``,
``describe(ref) -> str`` and ``num_classes(ref, cfg=None) -> int | None``, and may provide ``check(ref, cfg=None)``
(raises DataError when the source cannot be read). Loader modules import torch only inside the
functions that need it, so checking and describing a source stays torch-free. Adding a source
means: one loader module and one entry here.
"""

from __future__ import annotations

import importlib

from ..errors import DataError
from .types import SourceRef, SourceSpec

SOURCES: tuple[SourceSpec, ...] = (
    SourceSpec("synthetic", "Synthetic shapes",
               "10 procedurally drawn shape/pattern classes with random colours (no files needed).",
               loader="synthetic", num_classes=10,
               reads=("data.synthetic_train_size", "data.synthetic_test_size")),
    SourceSpec("imagefolder", "Image folder…",
               "A folder of images: one sub-folder per class (or unlabelled), or train/ and test/.",
               loader="imagefolder", takes_path=True, reads=("data.val_fraction", "data.classes_file")),
    SourceSpec("cifar10", "CIFAR-10", "50,000 train / 10,000 test photos, 10 classes, 32 px.",
               loader="torchvision_sets", downloads=True, num_classes=10,
               reads=("data.download_root",)),
    SourceSpec("cifar100", "CIFAR-100", "50,000 train / 10,000 test photos, 100 classes, 32 px.",
               loader="torchvision_sets", downloads=True, num_classes=100,
               reads=("data.download_root",)),
    SourceSpec("stl10", "STL-10", "5,000 labelled train (+100,000 unlabelled) / 8,000 test photos, 10 classes, 96 px.",
               loader="torchvision_sets", downloads=True, num_classes=10,
               reads=("data.download_root", "data.stl10_unlabeled")),
)


def source_spec(name: str) -> SourceSpec | None:
    """The spec of source kind ``name`` (None when there is none)."""
    return next((s for s in SOURCES if s.name == name), None)


def source_kind(text: str) -> SourceSpec | None:
    """The kind a ``data.source`` value names, also while its path is still empty ('imagefolder:')."""
    text = str(text).strip().lower()
    head, sep, _ = text.partition(":")
    kind = source_spec(head)
    return kind if kind is not None and (kind.takes_path == bool(sep)) else None


def source_syntaxes() -> list[str]:
    """How each kind is written: ['synthetic', 'imagefolder:<path>', 'cifar10', ...]."""
    return [s.syntax for s in SOURCES]


def source_choices_text() -> str:
    """'synthetic, imagefolder:<path>, cifar10, cifar100 or stl10'."""
    names = source_syntaxes()
    return ", ".join(names[:-1]) + f" or {names[-1]}" if len(names) > 1 else names[0]


def source_help() -> str:
    """One help sentence listing every kind (config field help, CLI help)."""
    return f"Data set: {source_choices_text()}."


def parse_source(spec: str) -> SourceRef:
    """Split a spec into (kind, argument): ('imagefolder', '/x'), ('cifar10', ''), ...

    Raises DataError for an unknown source."""
    text = str(spec).strip()
    head, sep, rest = text.partition(":")
    kind = source_spec(head.lower())
    if kind is not None and kind.takes_path and sep and rest.strip():
        return SourceRef(kind.name, rest.strip())
    kind = source_spec(text.lower())
    if kind is not None and not kind.takes_path:
        return SourceRef(kind.name, "")
    raise DataError(f"unknown data source {text!r}; data.source must be {source_choices_text()}")


def source_problem(spec: str) -> str | None:
    """Why ``spec`` is not a valid ``data.source`` (None when it is); no file is looked at."""
    for kind in SOURCES:
        prefix = f"{kind.name}:"
        if spec == kind.name and not kind.takes_path or \
                kind.takes_path and spec.startswith(prefix) and len(spec) > len(prefix):
            return None
    return f"data.source must be one of {', '.join(source_syntaxes())}, got {spec!r}"


def loader(ref: SourceRef):
    """The loader module of a parsed source (imported on first use)."""
    return importlib.import_module(f"{__package__}.{source_spec(ref.kind).loader}")


def known_num_classes(cfg) -> int | None:
    """Number of classes of ``cfg.source`` (a DataConfig or ExperimentConfig) without decoding an
    image: fixed for the synthetic and torchvision sources, the class folders of an image folder;
    None when unlabelled or the folder cannot be read."""
    data = getattr(cfg, "data", cfg)
    ref = parse_source(data.source)
    return loader(ref).num_classes(ref, data)


def check_source(spec) -> str | None:
    """A quick check, before any trainer starts, that a data source can be read: None when it
    looks usable, else the DataError sentence (path, problem, likely fix). For image folders it
    lists the top level and stops at the first image of every class folder (no decoding); the
    torchvision sources and synthetic data are not checked here (they download or generate)."""
    data = getattr(spec, "data", spec)
    spec = getattr(data, "source", spec)
    try:
        ref = parse_source(spec)
        check = getattr(loader(ref), "check", None)
        if check is not None:
            check(ref, data if hasattr(data, "classes_file") else None)
    except DataError as exc:
        return str(exc)
    return None


def describe_source(spec) -> str:
    """A one-line human description of a data source spec (a string or anything with .source)."""
    spec = getattr(spec, "source", spec)
    try:
        ref = parse_source(spec)
    except DataError:
        return f"unknown data source {str(spec)!r} (use {source_choices_text()})"
    return loader(ref).describe(ref)
