"""Where training batches come from: the one place that decides how the uint8 training cache is
held (``data.memory``) and hands each step its images.

Two placements, the same batches (indices and bytes) from both, so a run is reproducible across
memory modes and a resume is exact whichever mode either half used:

- ``resident``: the whole split is one uint8 tensor on the training device (the GPU when training
  there, else RAM); a step indexes it. This is the ``ram`` mode, and ``auto`` when the cache fits.
- ``stream``: the cache stays on disk; a background ``BatchPrefetcher`` gathers the rows of the
  coming batches (the loop tells it the epoch's remaining batches) into fresh tensors, pinned
  when CUDA is available, and they go to the device with ``non_blocking=True``. Rows are read with
  ``pread`` (``npy_rows.NpyRows``) from the cache's ``images.npy``, so they live only in the OS
  page cache, never in the process's RSS (a memory map would count every page it touched); at
  most ``depth + 2`` batches exist at once, so RAM use stays bounded whatever the data set's
  size. This is ``mmap``, and ``auto`` when the cache does not fit.

``auto`` rule (``choose_placement``): on a GPU, resident when the cache is at most half the
device's free memory (the rest is for the model, activations and the augmented views); on the
CPU, resident when the cache times the ranks on this node (each rank holds its own copy) is at
most half of ``MemAvailable`` (the test split, the model, the decoder's page cache and other
processes need the rest; going over it swaps, which is far slower than the mapped path).
Otherwise stream. A batch asked for out of the announced order is gathered on the spot (same
bytes), so correctness never depends on the prefetcher.
"""

from __future__ import annotations

import os
from collections import deque

import numpy as np
import torch

from ..data.npy_rows import NpyRows
from ..data.prefetch import DEFAULT_DEPTH, BatchPrefetcher, gather_batch

MEMORY_MODES = ("auto", "ram", "mmap")
RAM_FRACTION = 0.5          # auto: share of MemAvailable the node's resident copies may take
DEVICE_FRACTION = 0.5       # auto: share of the GPU's free memory a resident cache may take


def available_ram_bytes() -> int:
    """``MemAvailable`` from /proc/meminfo (bytes); total physical memory where it is missing."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def choose_placement(mode: str, cache_bytes: int, device: torch.device, *, local_ranks: int = 1,
                     ram_bytes: int | None = None, device_free: int | None = None) -> tuple[str, str]:
    """('resident' or 'stream', why) for ``data.memory`` = ``mode`` (see the module docstring)."""
    if mode not in MEMORY_MODES:
        raise ValueError(f"data.memory must be one of {', '.join(MEMORY_MODES)}, got {mode!r}")
    mb = cache_bytes / 2**20
    if mode == "ram":
        return "resident", f"data.memory = 'ram': the {mb:,.0f} MiB cache is loaded whole onto {device}"
    if mode == "mmap":
        return "stream", f"data.memory = 'mmap': batches are gathered from the mapped {mb:,.0f} MiB cache"
    if device.type == "cuda":
        free = torch.cuda.mem_get_info(device)[0] if device_free is None else device_free
        if cache_bytes <= DEVICE_FRACTION * free:
            return "resident", (f"data.memory = 'auto': the {mb:,.0f} MiB cache fits on {device} "
                                f"({free / 2**20:,.0f} MiB free), loaded there whole")
        return "stream", (f"data.memory = 'auto': the {mb:,.0f} MiB cache is more than half of {device}'s "
                          f"free memory ({free / 2**20:,.0f} MiB); batches are streamed from the mapped cache")
    ram = available_ram_bytes() if ram_bytes is None else ram_bytes
    need = cache_bytes * max(1, local_ranks)
    if need <= RAM_FRACTION * ram:
        return "resident", f"data.memory = 'auto': the {mb:,.0f} MiB cache fits in RAM, loaded whole"
    return "stream", (f"data.memory = 'auto': {local_ranks} x {mb:,.0f} MiB of cache is more than half of the "
                      f"available RAM ({ram / 2**20:,.0f} MiB); batches are streamed from the mapped cache")


class BatchFeed:
    """This rank's training batches: ``batch(idx)`` -> (uint8 images, int64 labels or None) on
    the training device, for the rank's index tensor ``idx``; ``plan(batches)`` announces the
    coming batches (a stream starts gathering them), ``close()`` stops the prefetcher."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor | None, device: torch.device,
                 placement: str, *, depth: int = DEFAULT_DEPTH, images_path: str = ""):
        if placement not in ("resident", "stream"):
            raise ValueError(f"placement must be 'resident' or 'stream', got {placement!r}")
        self.device, self.placement, self.depth = torch.device(device), placement, int(depth)
        if placement == "resident":
            self.images = images.to(self.device)
            self.labels = None if labels is None else labels.to(self.device)
        else:
            self.images = NpyRows(images_path) if images_path else images.numpy()
            self.labels = None if labels is None else labels.numpy()
        self.pin = torch.cuda.is_available() and self.device.type == "cuda"
        self._prefetcher: BatchPrefetcher | None = None
        self._expected: deque = deque()

    def plan(self, batches: list) -> None:
        """The index arrays the next ``batch`` calls will ask for, in order (a stream gathers them
        in the background; resident data needs nothing)."""
        if self.placement != "stream":
            return
        self.close()
        batches = [np.asarray(b, dtype=np.int64) for b in batches]
        self._expected = deque(batches)
        self._prefetcher = BatchPrefetcher(self.images, batches, self.labels, depth=self.depth,
                                           pin_memory=self.pin, device=self.device)

    def batch(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Images (and labels) of the rows ``idx``, on the training device."""
        if self.placement == "resident":
            images = self.images[idx.to(self.images.device)].to(self.device, non_blocking=True)
            labels = None if self.labels is None else self.labels[idx.to(self.labels.device)].to(self.device)
            return images, labels
        want = idx.cpu().numpy().astype(np.int64, copy=False)
        if self._prefetcher is not None and self._expected and np.array_equal(self._expected[0], want):
            self._expected.popleft()
            return next(self._prefetcher)
        self.close()                                # out of the announced order: gather it now
        x, y = gather_batch(self.images, want, self.labels, pin_memory=self.pin)
        return x.to(self.device, non_blocking=self.pin), None if y is None else y.to(self.device)

    def close(self) -> None:
        """Stop the background prefetcher, if any (the feed still answers ``batch``)."""
        if self._prefetcher is not None:
            self._prefetcher.close()
            self._prefetcher = None
        self._expected.clear()

    def release(self) -> None:
        """``close()`` and close the cache file a stream reads (end of training)."""
        self.close()
        if isinstance(self.images, NpyRows):
            self.images.close()


class FileRows:
    """Rows of a cache's ``images.npy`` (optionally the ``subset`` of row indices), read with
    ``pread`` only when sliced: ``rows[a:b]`` -> a new uint8 tensor; ``shape`` and ``len`` like
    the tensor. ``extract_features`` and the probe batch read a mapped split through it, so kNN
    and the probe never fault the memory map's pages into the RSS either."""

    def __init__(self, path: str, subset=None):
        self._rows = NpyRows(path)
        n = self._rows.shape[0]
        self._subset = np.arange(n) if subset is None else np.asarray(subset, dtype=np.int64).reshape(-1)
        self.shape = (len(self._subset), *self._rows.row_shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key) -> torch.Tensor:
        if not isinstance(key, slice):
            raise TypeError("FileRows takes slices; use lazy_rows(dataset, idx) for index arrays")
        return torch.from_numpy(self._rows[self._subset[key]])


def lazy_rows(dataset, idx=None):
    """The split's images (rows ``idx`` only, when given) for slicing: a ``FileRows`` over the
    cache file when the split is memory-mapped, else the tensor (indexed)."""
    if dataset.images_path:
        return FileRows(dataset.images_path, None if idx is None else torch.as_tensor(idx).cpu().numpy())
    return dataset.images if idx is None else dataset.images[idx]


def loads_mapped(cfg) -> bool:
    """Whether the splits are loaded memory-mapped (every mode but 'ram', which reads them whole)."""
    return cfg.data.memory != "ram"


def make_feed(cfg, train_set, device: torch.device, events) -> BatchFeed:
    """The feed of ``data.memory`` for this rank's training split (loaded mapped when
    ``loads_mapped(cfg)``); logs the choice and why. A mapped split kept resident on the CPU is
    read into RAM here (``train_set.images`` too, so kNN and probes read the same copy)."""
    device = torch.device(device)
    cache_bytes = int(train_set.images.numel()) * train_set.images.element_size()
    local_ranks = int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)
    placement, why = choose_placement(cfg.data.memory, cache_bytes, device, local_ranks=local_ranks)
    if placement == "resident" and device.type == "cpu" and loads_mapped(cfg):
        train_set.images, train_set.images_path = train_set.images.clone(), ""
    events.log(why)
    return BatchFeed(train_set.images, train_set.labels, device, placement, images_path=train_set.images_path)
