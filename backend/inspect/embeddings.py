"""Embeddings of a checkpoint on a data split, cached in ``<run>/inspect/*.h5``.

One file per (checkpoint, split, feature source, limit): ``<stem>-<split>-<features>-<limit>.h5``
with datasets ``features`` (N, F) float32, ``indices`` (N,) int64 into the split, ``labels`` (N,)
int64 (labelled data only) and ``projections/<key>`` (N, 2) float32 (key from ``projection.projection_key``), plus attrs
(checkpoint fingerprint, data config, class names). A file whose fingerprint no longer matches
the checkpoint (it was rewritten by training) is ignored and rebuilt. Files are written to a temp
name and ``os.replace``d, so a reader never sees a partial file.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..checkpoint import TEMP_MARK
from .. import faults
from ..errors import ConfigError, write_error
from ..evaluate import extract_features, subset_indices
from ..reporter import as_reporter
from .common import checkpoint_fingerprint, is_inside_run, restored

CACHE_FORMAT = 1
INSPECT_DIR = "inspect"
FEATURE_SOURCES = ("backbone", "projector")
SUBSET_SEED_OFFSET = 4  # same subset as the kNN bank of evaluate_knn_checkpoint for a given limit


@dataclass
class EmbeddingSet:
    """Features of ``split`` images under one checkpoint (numpy arrays, CPU)."""

    features: np.ndarray               # float32 (N, F)
    labels: np.ndarray | None          # int64 (N,) or None for unlabelled data
    indices: np.ndarray                # int64 (N,) positions in the split
    class_names: list[str]
    checkpoint: str                    # checkpoint file name
    split: str
    feature_source: str = "backbone"
    path: Path | None = None           # the cache file
    from_cache: bool = False
    seconds: float = 0.0               # time spent computing (0 when read from the cache)
    projections: dict = field(default_factory=dict)   # projection_key -> (N, 2) float32

    def __len__(self) -> int:
        return int(self.features.shape[0])

    @property
    def dim(self) -> int:
        """Feature dimension F."""
        return int(self.features.shape[1]) if self.features.ndim == 2 else 0


def cache_path(run_dir, checkpoint_file: Path, split: str, features: str, limit: int) -> Path:
    """Where the embeddings of this combination are cached (see the module docstring)."""
    stem = checkpoint_file.stem
    if not is_inside_run(run_dir, checkpoint_file):
        import hashlib
        stem += "-" + hashlib.sha256(str(checkpoint_file.resolve()).encode()).hexdigest()[:8]
    return Path(run_dir) / INSPECT_DIR / f"{stem}-{split}-{features}-{int(limit)}.h5"


def _data_key(cfg) -> str:
    return json.dumps({"data": cfg.to_dict()["data"], "seed": cfg.runtime.seed}, sort_keys=True)


def _read_cache(path: Path, fingerprint: str, data_key: str) -> EmbeddingSet | None:
    import h5py

    if not path.exists():
        return None
    try:
        with h5py.File(path, "r") as fh:
            attrs = fh.attrs
            if (int(attrs.get("format", -1)) != CACHE_FORMAT or attrs.get("fingerprint") != fingerprint
                    or attrs.get("data_key") != data_key):
                return None
            projections = {}
            if "projections" in fh:
                projections = {k: np.asarray(v[()], dtype=np.float32) for k, v in fh["projections"].items()}
            return EmbeddingSet(
                features=np.asarray(fh["features"][()], dtype=np.float32),
                labels=np.asarray(fh["labels"][()], dtype=np.int64) if "labels" in fh else None,
                indices=np.asarray(fh["indices"][()], dtype=np.int64),
                class_names=list(json.loads(attrs["class_names"])), checkpoint=str(attrs["checkpoint"]),
                split=str(attrs["split"]), feature_source=str(attrs["feature_source"]), path=path,
                from_cache=True, projections=projections)
    except (OSError, KeyError, ValueError):
        return None  # damaged or foreign file: rebuild it


def _write_cache(es: EmbeddingSet, fingerprint: str, data_key: str) -> None:
    """Write ``es`` (features, labels, indices, projections) to es.path atomically."""
    import h5py

    path = es.path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}{TEMP_MARK}{os.getpid()}-{id(es)}")
    try:
        with h5py.File(tmp, "w") as fh:
            if faults.disk_full("embeddings"):
                raise faults.enospc()
            fh.attrs.update({"format": CACHE_FORMAT, "fingerprint": fingerprint, "data_key": data_key,
                             "checkpoint": es.checkpoint, "split": es.split,
                             "feature_source": es.feature_source,
                             "class_names": json.dumps(list(es.class_names)),
                             "created": time.strftime("%Y-%m-%dT%H:%M:%S")})
            fh.create_dataset("features", data=np.asarray(es.features, dtype=np.float32))
            fh.create_dataset("indices", data=np.asarray(es.indices, dtype=np.int64))
            if es.labels is not None:
                fh.create_dataset("labels", data=np.asarray(es.labels, dtype=np.int64))
            group = fh.create_group("projections")
            for key, value in es.projections.items():
                group.create_dataset(key, data=np.asarray(value, dtype=np.float32))
        os.replace(tmp, path)
    except (OSError, RuntimeError) as exc:  # disk full, quota: one sentence, no half cache file
        raise write_error(path, exc, "no embeddings cache was written (an earlier one is kept); free some "
                                     "space and try again") from None
    finally:
        if tmp.exists():
            tmp.unlink()


def compute_embeddings(run_dir, *, checkpoint=None, split: str = "test", limit: int = 0,
                       features: str = "backbone", device: str = "cpu", progress=None, cancelled=None,
                       batch_size: int = 256, use_cache: bool = True) -> EmbeddingSet:
    """Features of up to ``limit`` images (0 = all) of ``split`` under a checkpoint of the run.

    Read from ``<run>/inspect/`` when a cache file for the same checkpoint content exists;
    otherwise computed in batches (frozen encoder, deterministic eval views: resize + normalise),
    reporting ``progress(fraction, message)`` and stopping with :class:`~backend.errors.Cancelled` when
    ``cancelled()`` is true, then cached. ``checkpoint`` defaults to ``checkpoints/last.pt``.
    The subset of a limited split is the same one ``evaluate_knn_checkpoint`` uses as its bank.
    """
    from ..data.augment import ViewGenerator
    from ..data.sources import load_dataset
    from ..restore import resolve_checkpoint
    from .common import run_config

    if features not in FEATURE_SOURCES:
        raise ConfigError(f"features must be backbone or projector, got {features!r}")
    if split not in ("train", "test"):
        raise ConfigError(f"split must be train or test, got {split!r}")
    if run_dir is None:
        raise ConfigError("compute_embeddings needs the run directory (its inspect/ folder holds the cache)")
    report = as_reporter(progress, cancelled)
    path = resolve_checkpoint(run_dir, checkpoint)
    if not path.exists():
        from ..errors import CheckpointError
        raise CheckpointError(f"checkpoint {path} does not exist")
    cfg = run_config(run_dir, path)
    fingerprint, data_key = checkpoint_fingerprint(path), _data_key(cfg)
    target = cache_path(run_dir, path, split, features, limit)
    if use_cache:
        cached = _read_cache(target, fingerprint, data_key)
        if cached is not None:
            report(1.0, f"read {len(cached)} embeddings from the cache")
            return cached

    start = time.perf_counter()
    report(0.0, "loading the checkpoint")
    method, cfg, path = restored(run_dir, path, device)
    dev = next(method.parameters()).device
    report(0.02, f"loading the {split} split")
    data = load_dataset(cfg.data, split, seed=cfg.runtime.seed)
    idx = subset_indices(len(data), int(limit), cfg.runtime.seed + SUBSET_SEED_OFFSET)
    images = data.images[idx]
    encoder = method.feature_encoder(projector=features == "projector")
    views = ViewGenerator(cfg.augment, cfg.data.image_size)
    chunks, n = [], images.shape[0]
    sub = report.sub(0.05, 0.98)
    for first in range(0, n, batch_size):
        sub(first / max(n, 1), f"embedding images {first}/{n}")
        chunks.append(extract_features(encoder, images[first:first + batch_size], views.eval_views,
                                       device=dev, batch_size=batch_size))
    feats = torch.cat(chunks).numpy().astype(np.float32) if chunks else np.zeros((0, 0), np.float32)
    labels = data.labels[idx].numpy().astype(np.int64) if data.labelled else None
    es = EmbeddingSet(features=feats, labels=labels, indices=idx.numpy().astype(np.int64),
                      class_names=list(data.class_names), checkpoint=path.name, split=split,
                      feature_source=features, path=target, from_cache=False,
                      seconds=time.perf_counter() - start)
    report.check()
    try:
        _write_cache(es, fingerprint, data_key)
    except OSError:
        pass  # read-only run folder: still return the features
    report(1.0, f"embedded {n} images")
    return es


def embedding_projection(es: EmbeddingSet, method: str = "pca", seed: int = 0, *, progress=None,
                         cancelled=None, reproducible: bool = False, on_draft=None) -> np.ndarray:
    """The (N, 2) projection of ``es``, from its cache file when stored there, else computed with
    :func:`project_2d` and added to the cache file under :func:`projection_key` (the fast default
    UMAP and the reproducible one are stored apart). ``on_draft``: see :func:`project_2d`."""
    from .projection import project_2d, projection_key

    key = projection_key(method, seed, reproducible)
    if key in es.projections:
        return es.projections[key]
    xy = project_2d(es.features, method=method, seed=seed, progress=progress, cancelled=cancelled,
                    reproducible=reproducible, on_draft=on_draft)
    es.projections[key] = xy
    if es.path is not None:
        _store_projection(es.path, key, xy)
    return xy


def _store_projection(path: Path, key: str, xy: np.ndarray) -> None:
    """Add one projection to a cache file (rewritten whole, atomically) if it is still current."""
    import h5py

    try:
        with h5py.File(path, "r") as fh:
            attrs = dict(fh.attrs)
            if fh["features"].shape[0] != xy.shape[0]:
                return  # the file was rebuilt for another checkpoint meanwhile
            es = EmbeddingSet(
                features=fh["features"][()], labels=fh["labels"][()] if "labels" in fh else None,
                indices=fh["indices"][()], class_names=json.loads(attrs["class_names"]),
                checkpoint=str(attrs["checkpoint"]), split=str(attrs["split"]),
                feature_source=str(attrs["feature_source"]), path=path,
                projections={k: v[()] for k, v in fh.get("projections", {}).items()})
        es.projections[key] = xy
        _write_cache(es, str(attrs["fingerprint"]), str(attrs["data_key"]))
    except (OSError, KeyError, ValueError):
        pass  # a cache is optional


def split_images(run_dir, indices=None, *, split: str = "test", checkpoint=None):
    """(uint8 images (n, 3, S, S), labels (n,) or None, class names) of a run's split, e.g. the
    thumbnails of the points of an EmbeddingSet (``indices`` = es.indices; None = all)."""
    from ..data.sources import load_dataset
    from .common import run_config

    cfg = run_config(run_dir, checkpoint)
    data = load_dataset(cfg.data, split, seed=cfg.runtime.seed)
    if indices is None:
        return data.images, data.labels, list(data.class_names)
    idx = torch.as_tensor(np.asarray(indices), dtype=torch.long)
    return data.images[idx], (data.labels[idx] if data.labelled else None), list(data.class_names)

