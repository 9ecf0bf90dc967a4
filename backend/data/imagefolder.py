"""``imagefolder:<path>``: a folder of image files, decoded with PIL into S x S RGB uint8.

Layouts, checked in this order:

1. ``<path>/train/`` and ``<path>/test/`` (or ``val/``): those folders are the splits;
2. class subfolders (``<path>/<class>/**/<image>``): labelled; ``data.val_fraction`` of every
   class is held out as the test split, chosen by the seed (a lone ``train/`` folder is treated
   as the root of this layout);
3. images directly in ``<path>``: unlabelled (``labels`` None, no class names), split the same way.

Classes are the names of subfolders that contain images, sorted; hidden files and folders are
ignored; extensions: jpg jpeg png bmp webp gif tif tiff (any case).

Decoding (``decode_image``): EXIF orientation applied; palette, grey, CMYK and the like converted to
RGB; transparent images composited on WHITE (cut-outs and icons are usually drawn for a white
page); 16-bit and 32-bit grey scaled to 8 bits rather than clipped; the centred square of side
min(width, height) resized to S x S with Pillow's antialiased bilinear filter (the usual
"shorter side to S, centre crop"); JPEGs are DCT-downscaled while decoding when much larger than S.
ICC profiles are not applied. Files that fail (truncated, empty, not an image, above PIL's
``Image.MAX_IMAGE_PIXELS`` - the decompression-bomb guard) are skipped and reported.
Building the cache decodes straight into the new entry's memory-mapped ``images.npy``, so an
ImageNet-size folder is never held in RAM: from ``PROCESS_MIN_FILES`` files on with a process
pool of every usable CPU (``parallel_decode``), below that with a thread pool (PIL releases the
GIL while decoding and resizing); progress and cancel per chunk of files either way. Where the
cache cannot be written, the thread pool decodes into memory instead.
Finding the files (layouts, hidden files, symlink loops, folder problems) is ``folder_tree``'s job.

Folder problems are refused with a DataError that names the path and the likely fix: a missing
path, a file instead of a folder, no read permission, no images at all, class folders without
images, and symlinks that loop (a link to itself, or a class folder linking back to the root).
Symlinked folders below the class level are never followed, so deeper loops cannot trap a scan.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import Cancelled, DataError
from .class_filter import check_present, read_classes_file
from .folder_tree import FolderTree, check_root, list_subdirs, read_subdirs, scan_tree, tree_problems
from .sampling import balanced_subset, derive_rng, holdout_split
from .types import Decoded, Plan

ALPHA_BACKGROUND = (255, 255, 255)   # transparent pixels become white
_CHUNK = 128                          # files per thread-pool task
PROCESS_MIN_FILES = 10_000            # cache builds this large decode in a process pool


def _flatten(tree: FolderTree, class_names: list[str], warn) -> tuple[list, np.ndarray | None]:
    """(records, labels) of a tree: labelled by class folder, or unlabelled loose files."""
    if tree.classes:
        if tree.loose:
            warn(f"ignored {len(tree.loose)} images directly in {tree.root} because it has class "
                 f"subfolders")
        records, labels = [], []
        for name in sorted(tree.classes):
            records.extend(tree.classes[name])
            labels.extend([class_names.index(name)] * len(tree.classes[name]))
        return records, np.asarray(labels, dtype=np.int64)
    return list(tree.loose), None


def _fingerprint(records: list, chosen: np.ndarray, extra) -> str:
    """Hash of every file name (the split and subset depend on them), the sizes and modification
    times of the ``chosen`` files (their pixels are what we cache) and ``extra``."""
    h = hashlib.sha256(repr(extra).encode())
    h.update("\0".join(rel for rel, _ in records).encode())
    for i in chosen:
        rel, entry = records[i]
        try:
            st = entry.stat()
            h.update(f"\n{rel}\0{st.st_size}\0{st.st_mtime_ns}".encode())
        except OSError:
            h.update(f"\n{rel}\0missing".encode())
    return h.hexdigest()[:24]


def plan(cfg, ref, split: str, seed: int, limit: int, *, warn, on_progress=None, cancelled=None) -> Plan:
    """Scan the folder ``ref.arg``, pick this split's files (and the limit subset) and key the
    cache on them. ``on_progress``/``cancelled`` are handed to ``decode_files`` when the plan is
    built; ``warn(message)`` receives problems that do not stop loading."""
    arg = ref.arg
    root = check_root(arg)
    subdirs = read_subdirs(root)
    test_dir = subdirs.get("test") or subdirs.get("val")
    size = int(cfg.image_size)
    wanted = _wanted(cfg)
    only = None if wanted is None else set(wanted)
    if "train" in subdirs and test_dir:
        layout = "train/test"
        dirs = {"train": root / subdirs["train"], "test": root / test_dir}
        other = "test" if split == "train" else "train"
        trees = {split: scan_tree(dirs[split], root, only=only),
                 other: scan_tree(dirs[other], root, classes_only=True, only=only)}
        for name, t in trees.items():
            tree_problems(t, root)
            if wanted is not None:
                check_present(wanted, t.classes, dirs[name], cfg.classes_file)
        tree = trees[split]
        class_names = sorted(set(trees["train"].classes) | set(trees["test"].classes))
        records, labels = _flatten(tree, class_names, warn)
        if labels is None:
            class_names = []
        index = np.arange(len(records))
    else:
        layout = "holdout"
        base = root / subdirs["train"] if list(subdirs) == ["train"] else root
        tree = scan_tree(base, root, only=only)
        tree_problems(tree, root)
        if wanted is not None:
            check_present(wanted, tree.classes, base, cfg.classes_file)
        class_names = sorted(tree.classes)
        records, labels = _flatten(tree, class_names, warn)
        train_idx, test_idx = holdout_split(labels, len(records), float(cfg.val_fraction),
                                            derive_rng(seed, "holdout"))
        index = train_idx if split == "train" else test_idx
        if index.size == 0:
            raise DataError(f"image folder {root} leaves no images for the {split} split "
                            f"(data.val_fraction = {cfg.val_fraction:g}, {len(records)} images)")
    split_labels = None if labels is None else labels[index]
    index = index[balanced_subset(split_labels, index.size, limit, derive_rng(seed, "limit", split))]
    seeded = layout == "holdout" or 0 < limit < len(records)
    key = {"source": "imagefolder", "path": str(root), "layout": layout, "split": split,
           **({"classes": len(wanted)} if wanted is not None else {}),
           "size": size, "limit": limit, "seed": int(seed) if seeded else None,
           "val_fraction": float(cfg.val_fraction) if layout == "holdout" else None,
           "fingerprint": _fingerprint(records, index, class_names)}
    chosen = [records[i][0] for i in index]
    chosen_labels = None if labels is None else labels[index]

    def build(allocate=None):
        out = None if allocate is None else allocate(len(chosen))
        images, errors = decode_files([str(root / rel) for rel in chosen], size,
                                      on_progress=on_progress, cancelled=cancelled, out=out)
        ok = np.array([e is None for e in errors], dtype=bool)
        skipped = [(rel, err) for rel, err in zip(chosen, errors) if err is not None]
        if not ok.any():
            raise DataError(f"none of the {len(chosen)} images of the {split} split in {root} could "
                            f"be read (first: {skipped[0][0]}: {skipped[0][1]})")
        kept_labels = chosen_labels
        if not ok.all():
            if out is not None:
                from .parallel_decode import compact_rows
                images = compact_rows(images, ok)
            else:
                images = np.ascontiguousarray(images[ok])
            kept_labels = None if chosen_labels is None else chosen_labels[ok]
        return Decoded(images, kept_labels, list(class_names), skipped)

    return Plan(key=key, label=f"imagefolder-{root.name or 'root'}", build=build, build_into=build)


def _wanted(cfg) -> list[str] | None:
    """The classes of ``data.classes_file`` (None: every class folder)."""
    text = getattr(cfg, "classes_file", "")
    return read_classes_file(text) if text else None


def class_names(arg: str, cfg=None) -> list[str]:
    """The class names ``plan`` labels this folder's images with (sorted; empty when unlabelled),
    from a cheap scan that stops at the first image of every class folder. Raises DataError like
    ``plan`` when the folder is missing or unreadable. ``cfg`` (a DataConfig): its
    ``classes_file`` keeps only the classes listed (all of which must be there)."""
    wanted = None if cfg is None else _wanted(cfg)
    if wanted is not None:
        wanted_set = set(wanted)
    root = check_root(arg)
    subdirs = read_subdirs(root)
    test_dir = subdirs.get("test") or subdirs.get("val")
    if "train" in subdirs and test_dir:
        folders = [root / subdirs["train"], root / test_dir]
    else:
        folders = [root / subdirs["train"] if list(subdirs) == ["train"] else root]
    trees = [scan_tree(f, root, classes_only=True, only=None if wanted is None else wanted_set)
             for f in folders]
    for folder, tree in zip(folders, trees):
        tree_problems(tree, root)
        if wanted is not None:
            check_present(wanted, tree.classes, folder, cfg.classes_file)
    return sorted(set().union(*(tree.classes for tree in trees)))


def num_classes(ref, cfg=None) -> int | None:
    """The number of class folders, those of ``cfg.classes_file`` when set (None when unlabelled
    or the folder cannot be read)."""
    try:
        return len(class_names(ref.arg, cfg)) or None
    except DataError:
        return None


def check(ref, cfg=None) -> None:
    """Raise DataError when the folder is missing, unreadable, empty or has empty class folders
    (or, with ``cfg.classes_file``, lacks a listed class)."""
    class_names(ref.arg, cfg)


def describe(ref) -> str:
    """One line about an image-folder source (cheap: looks at the top level only)."""
    root = Path(ref.arg).expanduser()
    if not root.is_dir():
        return f"Image folder {root} (missing)"
    try:
        subdirs = list_subdirs(root)
    except OSError:
        return f"Image folder {root} (unreadable)"
    if "train" in subdirs and ("test" in subdirs or "val" in subdirs):
        return f"Image folder {root}: train/ and {'test' if 'test' in subdirs else 'val'}/ splits"
    if subdirs:
        return (f"Image folder {root}: {len(subdirs)} class subfolders, held-out split by "
                f"data.val_fraction")
    return f"Image folder {root}: unlabelled images, held-out split by data.val_fraction"


# ---------------------------------------------------------------------------------------------
# Decoding

class _Poll:
    """``cancelled()`` seen as an Event (``is_set``), what ``parallel_decode`` polls."""

    def __init__(self, cancelled):
        self.is_set = cancelled


def decode_files(paths: list[str], size: int, *, workers: int | None = None, on_progress=None,
                 cancelled=None, out: np.ndarray | None = None):
    """Decode ``paths`` into uint8 (N, 3, size, size) plus a per-file error (None when decoded).

    Failed files leave zeros in their slot. ``out`` given (e.g. the cache entry's memory-mapped
    ``images.npy``) is filled and returned; from ``PROCESS_MIN_FILES`` files on, a process pool of
    every usable CPU decodes straight into it (``parallel_decode.decode_into``: no GIL, scales
    with cores; its start-up, about a second here, is then negligible). Otherwise a thread pool of
    ``workers`` (default: the CPUs this process may use, at most 8) fills ``out`` or a new array
    when there is enough work (faster for small folders: measured in benchmarks/data_scale.py). ``on_progress(fraction, text)`` hears about every chunk of files;
    ``cancelled()`` is polled per chunk and raises Cancelled."""
    n = len(paths)
    if out is not None and n >= PROCESS_MIN_FILES and (workers is None or workers > 1):
        from .parallel_decode import decode_into      # imports this module: import it late

        report = None if on_progress is None else (
            lambda done, total: on_progress(done / max(total, 1), f"decoding {total:,} images ({done:,} done)…"))
        errors = decode_into(paths, out, size, workers=workers, on_progress=report,
                             cancel=None if cancelled is None else _Poll(cancelled))
        return out, errors
    if out is None:
        out = np.zeros((n, 3, size, size), dtype=np.uint8)
    errors: list[str | None] = [None] * n
    max_pixels = Image.MAX_IMAGE_PIXELS
    done = [0]

    def work(start: int) -> None:
        if cancelled is not None and cancelled():
            raise Cancelled()
        if on_progress is not None:
            done[0] += 1   # chunks started; a rough count is enough for a progress bar
            on_progress(min(1.0, done[0] * _CHUNK / max(n, 1)), f"decoding {n:,} images…")
        for i in range(start, min(n, start + _CHUNK)):
            try:
                out[i] = decode_image(paths[i], size, max_pixels=max_pixels).transpose(2, 0, 1)
            except Exception as exc:  # noqa: BLE001 - any failure skips this one file
                errors[i] = error_reason(exc, paths[i])

    if workers is None:
        workers = min(8, usable_cpus())
    with warnings.catch_warnings():
        # PIL only warns between 1x and 2x MAX_IMAGE_PIXELS; we refuse those files too.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        if workers <= 1 or n <= 2 * _CHUNK:
            for start in range(0, n, _CHUNK):
                work(start)
        else:
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode") as pool:
                list(pool.map(work, range(0, n, _CHUNK)))
    return out, errors


def decode_image(path, size: int, *, max_pixels: int | None = None) -> np.ndarray:
    """One file -> uint8 (size, size, 3) RGB: oriented, converted, shorter side resized, centred."""
    with Image.open(path) as im:
        w, h = im.size
        if max_pixels and w * h > max_pixels:
            raise Image.DecompressionBombError(f"{w}x{h} pixels is above the limit of {max_pixels}")
        if im.format == "JPEG" and min(w, h) >= 2 * size:
            im.draft(None, (size, size))    # DCT-domain downscale; keeps both sides >= size
        im = _apply_exif_orientation(im)
        rgb = to_rgb(im)
        return np.asarray(resize_center_crop(rgb, size), dtype=np.uint8)


def _apply_exif_orientation(im: Image.Image) -> Image.Image:
    try:
        orientation = im.getexif().get(0x0112, 1)
    except Exception:  # noqa: BLE001 - broken EXIF: keep the pixels as stored
        return im
    return ImageOps.exif_transpose(im) if orientation in (2, 3, 4, 5, 6, 7, 8) else im


def to_rgb(im: Image.Image) -> Image.Image:
    """Any PIL mode -> 'RGB' (alpha composited on ALPHA_BACKGROUND, high bit depths scaled)."""
    mode = im.mode
    has_alpha = (mode in ("RGBA", "RGBa", "LA", "La", "PA") or "transparency" in im.info
                 or (mode == "P" and im.palette is not None and im.palette.mode == "RGBA"))
    if has_alpha:
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, ALPHA_BACKGROUND + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode == "RGB":
        return im
    if mode.startswith("I;16") or mode in ("I", "F"):
        values = np.asarray(im).astype(np.float64)
        if mode.startswith("I;16"):
            values = values / 257.0                          # 0..65535 -> 0..255
        elif mode == "I":
            values = values / 257.0 if values.max(initial=0) > 255 else values
        elif values.max(initial=0) <= 1.0:                   # 'F': 0..1 floats
            values = values * 255.0
        grey = np.clip(np.rint(values), 0, 255).astype(np.uint8)
        return Image.fromarray(grey, mode="L").convert("RGB")
    return im.convert("RGB")


def resize_center_crop(im: Image.Image, size: int) -> Image.Image:
    """Resize the centred min(w, h) square to size x size (antialiased bilinear)."""
    w, h = im.size
    if (w, h) == (size, size):
        return im
    m = min(w, h)
    box = ((w - m) / 2, (h - m) / 2, (w + m) / 2, (h + m) / 2)
    return im.resize((size, size), Image.Resampling.BILINEAR, box=box)


def error_reason(exc: Exception, path=None) -> str:
    """A short reason for a file that could not be decoded (``path``: to tell empty files apart)."""
    if isinstance(exc, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        return f"refused as a possible decompression bomb: {str(exc).split(',')[0]}"
    if isinstance(exc, UnidentifiedImageError):
        try:
            if path is not None and os.path.getsize(path) == 0:
                return "empty file (0 bytes)"
        except OSError:
            pass
        return "not a readable image"
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, FileNotFoundError):
        return "file disappeared"
    text = str(exc).strip() or type(exc).__name__
    if "truncated" in text.lower():
        return "truncated"
    return text if len(text) <= 80 else text[:77] + "..."


def usable_cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)
