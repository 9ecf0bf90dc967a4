"""The on-disk uint8 image cache: one folder per (source, split, size, ...) key, no pickle.

An entry is ``<root>/<label>-<split>-<S>px-<hash>/`` holding ``images.npy`` (uint8 N,3,S,S),
``labels.npy`` (int64 N, only for labelled data) and ``meta.json`` (format version, the full key,
class names, skipped files). It is written into a ``.tmp-*`` sibling folder and renamed into
place, so a killed process never leaves a half entry under a real name; stale temp folders are
swept later. Reading checks the version, the key, shapes and dtypes, and treats anything odd as a
miss (the broken entry is deleted and rebuilt) - a bad cache never crashes a run.

``load_entry(..., mmap=True)`` maps the images read-only instead of reading them (data larger
than RAM); the default reads them into memory as before.

Root: ``cfg.cache_dir``, else ``$SSLWB_CACHE_DIR``, else ``~/.cache/sslwb/cache``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
import uuid
from pathlib import Path

import numpy as np

from .. import faults

FORMAT_VERSION = 1
ENV_VAR = "SSLWB_CACHE_DIR"
DEFAULT_ROOT = "~/.cache/sslwb/cache"
_TMP_PREFIX = ".tmp-"
_STALE_TMP_SECONDS = 24 * 3600


def cache_root(cfg) -> Path:
    """The cache folder for a DataConfig (not created here)."""
    root = getattr(cfg, "cache_dir", "") or os.environ.get(ENV_VAR, "") or DEFAULT_ROOT
    return Path(root).expanduser()


def key_hash(key: dict) -> str:
    """A stable short hash of a JSON-serialisable key (format version included)."""
    text = json.dumps({"format": FORMAT_VERSION, **key}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def entry_name(label: str, split: str, size: int, key: dict) -> str:
    """The folder name of an entry: readable prefix plus the key hash."""
    prefix = re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{label}-{split}-{size}px").strip("-.")[:80]
    return f"{prefix}-{key_hash(key)}"


def load_entry(root, name: str, key: dict, size: int, *, mmap: bool = False):
    """(images, labels or None, meta) of a valid entry, else None (a broken entry is removed).

    ``mmap=True`` maps ``images.npy`` read-only (``np.load(mmap_mode="r")``) instead of reading it:
    the pages come from disk as they are touched and the OS may drop them again, so a cache larger
    than RAM can be iterated (e.g. by ``backend.data.prefetch.BatchPrefetcher``). The header is still
    checked (shape, dtype, a file too short to hold it is a miss); the labels are read into RAM."""
    path = Path(root) / name
    if not path.is_dir():
        return None
    try:
        meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
        if meta.get("format") != FORMAT_VERSION or meta.get("key") != _jsonable(key):
            raise ValueError("key or format mismatch")
        images = np.load(path / "images.npy", mmap_mode="r" if mmap else None, allow_pickle=False)
        n = int(meta["n"])
        if images.dtype != np.uint8 or images.shape != (n, 3, size, size):
            raise ValueError(f"images have shape {images.shape} {images.dtype}")
        labels = None
        if meta["labelled"]:
            labels = np.load(path / "labels.npy", mmap_mode=None, allow_pickle=False)
            if labels.dtype != np.int64 or labels.shape != (n,):
                raise ValueError(f"labels have shape {labels.shape} {labels.dtype}")
            if n and (labels.min() < 0 or labels.max() >= len(meta["class_names"])):
                raise ValueError("labels out of range")
        if not isinstance(meta["class_names"], list) or not isinstance(meta["skipped"], list):
            raise ValueError("bad meta")
        return images, labels, meta
    except Exception:  # noqa: BLE001 - any unreadable entry is a miss, rebuilt by the caller
        shutil.rmtree(path, ignore_errors=True)
        return None


def save_entry(root, name: str, key: dict, images: np.ndarray, labels: np.ndarray | None,
               meta: dict) -> Path:
    """Write an entry atomically (temp folder + rename); raises OSError when the disk refuses.

    If another process finished the same entry first, its copy is kept and ours dropped."""
    tmp = begin_entry(root, name)
    try:
        if faults.disk_full("cache"):
            (tmp / "images.npy").write_bytes(b"\x93NUMPY" + b"\0" * 64)
            raise faults.enospc()
        np.save(tmp / "images.npy", np.ascontiguousarray(images, dtype=np.uint8), allow_pickle=False)
        return commit_entry(root, name, tmp, key, labels, meta, int(images.shape[0]))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def begin_entry(root, name: str) -> Path:
    """A new temp folder for entry ``name`` (stale temps swept): the caller writes ``images.npy``
    into it - e.g. decoded in place through ``parallel_decode.open_image_memmap``, so a data set
    larger than RAM is never held whole - then calls ``commit_entry`` (or removes the folder)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    _sweep_stale_temps(root)
    tmp = root / f"{_TMP_PREFIX}{name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    return tmp


def commit_entry(root, name: str, tmp: Path, key: dict, labels: np.ndarray | None, meta: dict,
                 n: int) -> Path:
    """Finish the temp folder ``tmp`` (its ``images.npy`` holds ``n`` rows): write labels and
    meta.json, then rename it into place. A concurrent writer's finished copy wins; ``tmp`` is
    removed in every case."""
    final = Path(root) / name
    try:
        if labels is not None:
            np.save(tmp / "labels.npy", np.ascontiguousarray(labels, dtype=np.int64), allow_pickle=False)
        full_meta = {**_jsonable(meta), "format": FORMAT_VERSION, "key": _jsonable(key),
                     "n": int(n), "labelled": labels is not None,
                     "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
        (tmp / "meta.json").write_text(json.dumps(full_meta, indent=1), encoding="utf-8")
        try:
            os.rename(tmp, final)
        except OSError:
            if not (final / "meta.json").is_file():   # not a concurrent writer's finished copy
                raise
        return final
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def entry_bytes(root, name: str) -> int:
    """Size in bytes of an entry's ``images.npy`` (0 when there is none)."""
    try:
        return (Path(root) / name / "images.npy").stat().st_size
    except OSError:
        return 0


def _sweep_stale_temps(root: Path) -> None:
    """Remove temp folders left by killed processes (older than a day)."""
    now = time.time()
    try:
        for entry in os.scandir(root):
            if entry.name.startswith(_TMP_PREFIX) and entry.is_dir(follow_symlinks=False):
                try:
                    if now - entry.stat(follow_symlinks=False).st_mtime > _STALE_TMP_SECONDS:
                        shutil.rmtree(entry.path, ignore_errors=True)
                except OSError:
                    pass
    except OSError:
        pass


def _jsonable(obj):
    """Round-trip through JSON so comparisons with a stored key see the same types."""
    return json.loads(json.dumps(obj))
