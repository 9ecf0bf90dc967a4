"""Read rows of a ``.npy`` file with ``os.pread`` instead of a memory map.

A memory map is the simplest way to use a cache larger than RAM, but every page it touches is
counted in the process's RSS (and recent kernels map whole large folios around each fault, so
random access maps much more than it reads), which looks like a leak to a job scheduler even though
those pages are clean and reclaimable. ``NpyRows`` reads exactly the rows asked for with one
``pread`` each, straight into the caller's buffer: the data lives only in the OS page cache, never
in this process's RSS. Rows are read in increasing file order (read-ahead friendly).

``NpyRows(path)`` has ``shape``, ``dtype``, ``len()`` and ``rows[idx]`` (an int or an int array ->
a new array) and ``read_into(idx, out)``; ``BatchPrefetcher`` uses ``read_into`` when present.
C-ordered arrays of fixed-size dtypes only (the cache's ``images.npy`` is one).
"""

from __future__ import annotations

import os

import numpy as np


class NpyRows:
    """Row access to a C-ordered ``.npy`` file through ``os.pread`` (see the module docstring)."""

    def __init__(self, path):
        self.path = os.fspath(path)
        with open(self.path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
            else:
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
            self.offset = fh.tell()
        if fortran or dtype.hasobject or not shape:
            raise ValueError(f"{self.path}: NpyRows reads C-ordered, non-object arrays with at least one axis")
        self.shape, self.dtype = tuple(shape), dtype
        self.row_shape = self.shape[1:]
        self.row_bytes = int(np.prod(self.row_shape, dtype=np.int64)) * dtype.itemsize
        expected = self.offset + self.shape[0] * self.row_bytes
        if os.path.getsize(self.path) < expected:
            raise ValueError(f"{self.path} is truncated: {os.path.getsize(self.path)} bytes, "
                             f"{expected} needed for shape {self.shape}")
        self._fd = os.open(self.path, os.O_RDONLY)

    def __len__(self) -> int:
        return self.shape[0]

    def read_into(self, idx, out: np.ndarray) -> None:
        """Row ``idx[j]`` into ``out[j]`` for every j (``out``: C-contiguous, (len(idx), *row_shape))."""
        idx = np.asarray(idx, dtype=np.int64).reshape(-1)
        n = self.shape[0]
        if out.shape != (idx.size, *self.row_shape) or out.dtype != self.dtype or not out.flags.c_contiguous:
            raise ValueError(f"out must be C-contiguous {self.dtype} {(idx.size, *self.row_shape)}")
        if idx.size and (idx.min() < -n or idx.max() >= n):
            raise IndexError(f"row index out of range for {n} rows: {idx.min()}..{idx.max()}")
        idx = np.where(idx < 0, idx + n, idx)
        flat = out.reshape(idx.size, -1).view(np.uint8)
        for j in np.argsort(idx, kind="stable"):
            row = memoryview(flat[j])
            start = self.offset + int(idx[j]) * self.row_bytes
            got = os.preadv(self._fd, [row], start)
            if got != self.row_bytes:
                raise OSError(f"{self.path}: short read of row {int(idx[j])} ({got} of {self.row_bytes} bytes)")

    def __getitem__(self, idx) -> np.ndarray:
        """``rows[i]`` -> one row; ``rows[array]`` -> the rows stacked (new arrays)."""
        single = np.ndim(idx) == 0
        idx = np.atleast_1d(np.asarray(idx, dtype=np.int64))
        out = np.empty((idx.size, *self.row_shape), dtype=self.dtype)
        self.read_into(idx, out)
        return out[0] if single else out

    def close(self) -> None:
        """Close the file (reads after this raise OSError)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __del__(self):
        if getattr(self, "_fd", -1) >= 0:
            self.close()
