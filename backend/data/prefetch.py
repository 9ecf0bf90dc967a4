"""Background batch gathering from a (possibly memory-mapped) uint8 image array.

``BatchPrefetcher(images, batches, labels)`` walks ``batches`` (index arrays, in the order given)
in one background thread: it gathers ``images[idx]`` (and ``labels[idx]``) into a fresh tensor -
pinned when CUDA is available, so the consumer's ``.to(device, non_blocking=True)`` is a real
asynchronous copy - and hands it over through a bounded queue of ``depth`` batches (default 2).
At most ``depth + 2`` batches exist at once (queued, being gathered, held by the consumer), so
memory stays bounded however large the array is; with a memory-mapped cache
(``cache.load_entry(..., mmap=True)``) only the touched pages are read and the OS may evict them;
with ``npy_rows.NpyRows`` the rows are ``pread`` into the batch and never enter the RSS at all.

Rows are read in increasing index order (kinder to disks and to read-ahead) and put back in the
batch's order, so the output depends only on the index order: deterministic. An exception in the
thread is re-raised in the consumer at the batch where it happened; ``close()`` (also on leaving a
``with`` block, or when iteration ends) stops and joins the thread without reading further batches.

Pages of a memory map that the thread has read count in the process's RSS (clean, file-backed
pages the kernel reclaims under pressure; ``benchmarks/data_scale.py`` shows the private memory
stays small). Where the reported RSS itself must stay small (a scheduler's memory limit), use
``npy_rows.NpyRows``: dropping mapped pages with madvise does not help there, because recent
kernels map whole large folios around every fault of a random access pattern.

Pinned tensors come from torch's caching host allocator, which tracks pending non_blocking copies,
so no buffer is reused while a copy from it may still be running.
"""

from __future__ import annotations

import queue
import threading
from typing import Iterable, Iterator

import numpy as np
import torch

DEFAULT_DEPTH = 2
_POLL_S = 0.1
_END = object()


class _Failure:
    def __init__(self, exc: BaseException):
        self.exc = exc


def gather_batch(images: np.ndarray, idx, labels: np.ndarray | None = None, *,
                 pin_memory: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``images[idx]`` (and ``labels[idx]``) as new CPU tensors, pinned if asked.

    ``images``: a uint8 array, a memory map, or an ``npy_rows.NpyRows`` (read straight into the
    tensor). The rows are read in sorted index order and written back in the order of ``idx``."""
    idx = np.asarray(idx, dtype=np.int64).reshape(-1)
    n = images.shape[0]
    if idx.size and (idx.min() < -n or idx.max() >= n):
        raise IndexError(f"batch index out of range for {n} images: {idx.min()}..{idx.max()}")
    out = torch.empty((idx.size, *images.shape[1:]), dtype=torch.uint8, pin_memory=pin_memory)
    view = out.numpy()
    if hasattr(images, "read_into"):                 # npy_rows.NpyRows: pread into the buffer
        images.read_into(idx, view)
    else:
        order = np.argsort(idx, kind="stable")
        view[order] = images[idx[order]]
    lab = None
    if labels is not None:
        lab = torch.from_numpy(np.asarray(labels)[idx].astype(np.int64, copy=False))
        if pin_memory:
            lab = lab.pin_memory()
    return out, lab


class BatchPrefetcher:
    """Iterate ``(images uint8 (B, ...), labels int64 (B,) or None)`` for each index array.

    ``pin_memory``: None (default) pins when CUDA is available. ``device``: when given, each batch
    is moved there in the consumer's thread (``non_blocking=True`` when pinned); otherwise the CPU
    tensors are yielded and the caller moves them. Single pass; use as a context manager or call
    ``close()`` to stop early."""

    def __init__(self, images, batches: Iterable, labels=None, *, depth: int = DEFAULT_DEPTH,
                 pin_memory: bool | None = None, device=None):
        if int(depth) < 1:
            raise ValueError(f"depth must be at least 1, got {depth}")
        if isinstance(images, torch.Tensor):
            images = images.numpy()
        if isinstance(labels, torch.Tensor):
            labels = labels.numpy()
        if labels is not None and len(labels) != images.shape[0]:
            raise ValueError(f"labels has {len(labels)} entries for {images.shape[0]} images")
        self.images, self.labels = images, labels
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else bool(pin_memory)
        self.device = torch.device(device) if device is not None else None
        self._queue: queue.Queue = queue.Queue(maxsize=int(depth))
        self._stop = threading.Event()
        self._done = False
        self._thread = threading.Thread(target=self._produce, args=(iter(batches),),
                                        name="batch-prefetch", daemon=True)
        self._thread.start()

    # ---- producer --------------------------------------------------------------------------
    def _put(self, item) -> bool:
        """Queue ``item`` unless stopped first; False when stopped."""
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self, batches: Iterator) -> None:
        try:
            for idx in batches:
                if self._stop.is_set():
                    return
                item = gather_batch(self.images, idx, self.labels, pin_memory=self.pin_memory)
                if not self._put(item):
                    return
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
            self._put(_Failure(exc))
            return
        self._put(_END)

    # ---- consumer --------------------------------------------------------------------------
    def __iter__(self):
        return self

    def __next__(self):
        item = None
        while item is None:
            if self._done:
                raise StopIteration
            try:
                item = self._queue.get(timeout=_POLL_S)
            except queue.Empty:
                if not self._thread.is_alive() and self._queue.empty():
                    self._done = True       # stopped by close() from another thread
        if item is _END:
            self.close()
            raise StopIteration
        if isinstance(item, _Failure):
            self.close()
            raise item.exc
        if self.device is None:
            return item
        x, y = item
        nb = self.pin_memory and self.device.type == "cuda"
        return x.to(self.device, non_blocking=nb), (None if y is None else y.to(self.device, non_blocking=nb))

    def close(self) -> None:
        """Stop the thread (it finishes at most the batch it is gathering) and wait for it."""
        self._done = True
        self._stop.set()
        while True:                       # unblock a producer waiting on a full queue
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._thread.join()

    @property
    def alive(self) -> bool:
        """Whether the background thread is still running."""
        return self._thread.is_alive()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        if not getattr(self, "_done", True):
            self._stop.set()


def batch_indices(n: int, batch_size: int, *, seed: int | None = None, drop_last: bool = True):
    """Index arrays for one epoch over ``n`` items: shuffled by ``seed`` (None: in order)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    order = np.arange(n) if seed is None else np.random.default_rng(seed).permutation(n)
    stop = n - n % batch_size if drop_last else n
    return [order[i:i + batch_size] for i in range(0, stop, batch_size)]
