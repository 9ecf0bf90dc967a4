"""Decode many image files into one preallocated uint8 (N, 3, S, S) array with a process pool.

``decode_into(paths, out, size)`` fills ``out`` (an in-RAM array, or a memory-mapped ``.npy`` made
by ``open_image_memmap`` - then each worker process maps the same file and writes its rows itself,
so no pixels travel through pipes and the parent never holds the data set in RAM). Each file is
decoded by ``imagefolder.decode_image`` - the same decoding as ``imagefolder:`` sources: EXIF
orientation, any mode to RGB (alpha on white), 16-bit scaled, JPEG draft downscale, and PIL's
decompression-bomb guard (``Image.MAX_IMAGE_PIXELS`` of the parent, warnings treated as errors).
A failed file leaves zeros and gets a reason (``imagefolder.error_reason``) in the returned list.

Resizing rule at cache resolution S: the shorter side is scaled to S and the centre S x S square
kept (``decode_image`` resizes the centred min(w, h) square, the same thing). Why: it is the
standard ImageNet evaluation transform (resize + centre crop), it keeps the object scale
consistent across images of any aspect ratio (no stretching), and training augmentations such as
RandomResizedCrop then work on the cached square exactly as they would on a square photo. Pick S
at least the training size (e.g. 1.14x it, 256 for 224, as the ImageNet recipe does) so random
crops are not upsampled.

Work is split into chunks of ``chunk`` files; at most ``4 x workers`` chunks are queued at once.
``on_progress(done, total)`` hears the number of files finished after every chunk (it reaches
``total``); ``cancel`` (a ``threading.Event``) is checked between chunks: pending chunks are
dropped, running ones finish, and ``imagefolder.Cancelled`` is raised.
"""

from __future__ import annotations

import mmap
import multiprocessing
import os
import warnings
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

import numpy as np
from PIL import Image

from ..errors import Cancelled
from .imagefolder import usable_cpus, decode_image, error_reason

DEFAULT_CHUNK = 64
_QUEUED_PER_WORKER = 4


def open_image_memmap(path, n: int, size: int, *, reserve: bool = False) -> np.memmap:
    """Create a writable ``.npy`` file holding uint8 (n, 3, size, size) zeros, memory-mapped.

    ``np.load(path, mmap_mode="r")`` reads it back (the cache's ``images.npy`` format).
    ``reserve``: allocate the file's blocks now (``posix_fallocate``), so a disk too small fails
    here with OSError (ENOSPC) instead of killing the process with SIGBUS when a page is written."""
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(int(n), 3, int(size), int(size)))
    if reserve and hasattr(os, "posix_fallocate"):
        fd = os.open(path, os.O_RDWR)
        try:
            os.posix_fallocate(fd, 0, os.path.getsize(path))
        finally:
            os.close(fd)
    return out


def compact_rows(images: np.memmap, keep: np.ndarray, *, chunk: int = 1024) -> np.memmap:
    """Drop the rows of a file-backed ``.npy`` memory map where ``keep`` is False: the kept rows
    are copied (in chunks, never the whole array in RAM) into a new file that replaces the old
    one under the same name; returns it mapped read-only."""
    path = str(images.filename)
    kept = np.flatnonzero(np.asarray(keep, dtype=bool))
    tmp = path + ".compact"
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(kept.size, *images.shape[1:]))
    for start in range(0, kept.size, chunk):
        out[start:start + chunk] = images[kept[start:start + chunk]]
    out.flush()
    del out
    os.replace(tmp, path)
    return np.load(path, mmap_mode="r", allow_pickle=False)


def _decode_rows(paths, size: int, max_pixels, target) -> list:
    """Decode ``paths`` into ``target`` rows (C, H, W); per-file errors (None when decoded)."""
    errors = []
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        for i, path in enumerate(paths):
            try:
                target[i] = decode_image(path, size, max_pixels=max_pixels).transpose(2, 0, 1)
                errors.append(None)
            except Exception as exc:  # noqa: BLE001 - any failure skips this one file
                errors.append(error_reason(exc, path))
    return errors


def _chunk_worker(paths, start: int, size: int, max_pixels, mapped):
    """Process-pool task: decode one chunk. ``mapped`` = (filename, offset, shape) writes into that
    memory-mapped file and returns (start, errors, None); else returns (start, errors, pixels)."""
    if mapped is not None:
        filename, offset, shape = mapped
        out = np.memmap(filename, dtype=np.uint8, mode="r+", offset=offset, shape=shape)
        errors = _decode_rows(paths, size, max_pixels, out[start:start + len(paths)])
        out.flush()
        del out
        return start, errors, None
    pixels = np.zeros((len(paths), 3, size, size), dtype=np.uint8)
    return start, _decode_rows(paths, size, max_pixels, pixels), pixels


def _mapped_target(out: np.ndarray):
    """(filename, offset, shape) when ``out`` is a whole file-backed memmap, else None."""
    if isinstance(out, np.memmap) and isinstance(out.base, mmap.mmap) and out.filename \
            and out.flags.c_contiguous and out.flags.writeable:
        return str(out.filename), int(out.offset), tuple(out.shape)
    return None


def decode_into(paths: list, out: np.ndarray, size: int, *, workers: int | None = None,
                chunk: int = DEFAULT_CHUNK, on_progress=None, cancel=None) -> list:
    """Decode ``paths`` into ``out`` (uint8 (len(paths), 3, size, size)); per-file errors.

    ``workers``: processes (default: every CPU this process may use); 1 decodes in this process.
    See the module docstring for chunks, progress and cancel."""
    n, size = len(paths), int(size)
    if out.shape != (n, 3, size, size) or out.dtype != np.uint8:
        raise ValueError(f"out must be uint8 {(n, 3, size, size)}, got {out.dtype} {tuple(out.shape)}")
    if chunk < 1:
        raise ValueError(f"chunk must be at least 1, got {chunk}")
    workers = usable_cpus() if workers is None else max(1, int(workers))
    max_pixels = Image.MAX_IMAGE_PIXELS
    errors: list = [None] * n
    starts = list(range(0, n, chunk))
    done = 0

    def finish(start: int, errs: list) -> None:
        nonlocal done
        errors[start:start + len(errs)] = errs
        done += len(errs)
        if on_progress is not None:
            on_progress(done, n)

    if workers == 1 or len(starts) <= 1:
        for start in starts:
            if cancel is not None and cancel.is_set():
                raise Cancelled()
            part = paths[start:start + chunk]
            finish(start, _decode_rows(part, size, max_pixels, out[start:start + len(part)]))
        return errors

    mapped = _mapped_target(out)
    if mapped is not None:
        out.flush()
    context = multiprocessing.get_context("forkserver" if "forkserver" in
                                          multiprocessing.get_all_start_methods() else "spawn")
    pending = iter(starts)
    with ProcessPoolExecutor(max_workers=min(workers, len(starts)), mp_context=context) as pool:
        running = set()

        def submit_more() -> None:
            for start in pending:
                running.add(pool.submit(_chunk_worker, paths[start:start + chunk], start, size,
                                        max_pixels, mapped))
                if len(running) >= workers * _QUEUED_PER_WORKER:
                    return

        submit_more()
        try:
            while running:
                finished, _ = wait(running, timeout=0.2, return_when=FIRST_COMPLETED)
                if cancel is not None and cancel.is_set():
                    raise Cancelled()
                for future in finished:
                    running.discard(future)
                    start, errs, pixels = future.result()
                    if pixels is not None:
                        out[start:start + len(errs)] = pixels
                    finish(start, errs)
                submit_more()
        except BaseException:
            for future in running:
                future.cancel()
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    if mapped is not None:
        out.flush()
    return errors
