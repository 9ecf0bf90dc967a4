"""Checkpoint files: atomic writes, a content hash beside each file, and safe loading.

A checkpoint is written to a temp file in the same folder, fsynced, then ``os.replace``d onto its
final name, so the final name never points to a partial file. A sidecar ``<name>.sha256`` lists
the SHA-256 of the committed content (the previous hash is kept while the swap happens, so a kill
between the two renames never makes a good file look corrupt). Loading uses
``torch.load(weights_only=True)`` only: a pickle payload is refused, never executed.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
import zipfile
from pathlib import Path

import torch

from .errors import CheckpointError

TEMP_MARK = ".tmp-"


def file_sha256(path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _hash_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_text_atomic(path: Path, text: str) -> None:
    """Write a small text file under a temp name, fsync it and rename it over ``path``."""
    tmp = path.with_name(f"{path.name}{TEMP_MARK}{os.getpid()}")
    try:
        with open(tmp, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():   # a failed write (disk full) leaves no temp file behind
            tmp.unlink()


def _write_failure(folder: Path, exc: RuntimeError) -> OSError:
    """The OSError behind torch.save's RuntimeError: ENOSPC when the disk is (nearly) full."""
    import errno
    import shutil
    try:
        full = shutil.disk_usage(folder).free < 1 << 20
    except OSError:
        full = False
    if full:
        return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return OSError(errno.EIO, f"torch.save failed: {str(exc).splitlines()[0][:200]}")


def save_checkpoint(state: dict, path) -> Path:
    """Write ``state`` (state dicts and plain values only) atomically to ``path`` with its hash."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}{TEMP_MARK}{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            try:
                torch.save(state, fh)
            except RuntimeError as exc:  # the zip writer turns a failed write into RuntimeError
                raise _write_failure(tmp.parent, exc) from None
            fh.flush()
            os.fsync(fh.fileno())
        new_hash = file_sha256(tmp)
        hash_file = _hash_path(path)
        old = _read_hashes(hash_file)[:1]
        _write_text_atomic(hash_file, "\n".join([new_hash, *old]) + "\n")  # both valid during swap
        os.replace(tmp, path)
        _fsync_dir(path.parent)
        try:
            _write_text_atomic(hash_file, new_hash + "\n")
        except OSError:
            pass  # the sidecar still lists the new hash (beside the old one): the commit stands
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def ensure_writable(folder) -> None:
    """Raise CheckpointError unless a file can be created in ``folder`` (created when missing).

    Called before training starts, so a read-only or full run directory is reported at once
    instead of when the first checkpoint is due."""
    folder = Path(folder)
    probe = folder / f".write-probe{TEMP_MARK}{os.getpid()}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with open(probe, "wb") as fh:
            fh.write(b"0")
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        raise CheckpointError(f"cannot write in {folder}: {exc.strerror or exc}; the run's config, metrics and "
                              f"checkpoints are saved there: make it writable (or free space), then start "
                              f"again") from None
    finally:
        try:
            probe.unlink()
        except OSError:
            pass


def clean_stale_temp_files(folder) -> list[Path]:
    """Remove temp files left by a writer that was killed mid-save; returns what was removed."""
    folder = Path(folder)
    removed = []
    if folder.is_dir():
        for p in folder.iterdir():
            if TEMP_MARK in p.name:
                try:
                    p.unlink()
                    removed.append(p)
                except OSError:
                    pass
    return removed


def _read_hashes(hash_file: Path) -> list[str]:
    try:
        return [h.strip() for h in hash_file.read_text().split() if h.strip()]
    except OSError:
        return []


def verify_checkpoint_hash(path) -> None:
    """Raise CheckpointError if the sidecar hash exists and matches none of the file's hashes."""
    path = Path(path)
    hashes = _read_hashes(_hash_path(path))
    if hashes and file_sha256(path) not in hashes:
        raise CheckpointError(f"{path} does not match its recorded content hash ({_hash_path(path).name}): "
                              f"the file was modified or damaged after it was written")


# An ONNX ModelProto starts with field 1 (ir_version, a small varint), then another field's tag.
_ONNX_NEXT_TAGS = {0x12, 0x1A, 0x22, 0x28, 0x32, 0x3A, 0x42, 0x72}


def _looks_like_onnx(head: bytes) -> bool:
    """True when ``head`` starts like a serialised ONNX model (whatever the file is called)."""
    return len(head) >= 3 and head[0] == 0x08 and 1 <= head[1] <= 30 and head[2] in _ONNX_NEXT_TAGS


def _describe_safetensors(head: bytes, size: int) -> str:
    """Why a safetensors file cannot be a checkpoint: an export, or a damaged/foreign file."""
    n = int.from_bytes(head[:8], "little") if len(head) >= 8 else -1
    if n < 2 or n > size - 8 or head[8:9] != b"{":
        return (f"it is not a usable safetensors file (its header length, {n} bytes, is impossible for a "
                f"file of {size} bytes: damaged or not safetensors), and in any case not a training checkpoint")
    return "this is an exported model (safetensors), not a training checkpoint"


def _describe_foreign(path: Path, head: bytes, size: int) -> str | None:
    """A reason why ``path`` is not a training checkpoint, from its first bytes (None if unsure)."""
    if head.startswith(b"\xff\xd8\xff"):
        return "it is a JPEG image, not a checkpoint"
    if head.startswith(b"\x89PNG"):
        return "it is a PNG image, not a checkpoint"
    if path.suffix.lower() == ".onnx" or _looks_like_onnx(head):
        return "this is an exported model (ONNX), not a training checkpoint"
    if path.suffix.lower() == ".safetensors" or (len(head) > 8 and head[8:10] == b'{"'):
        return _describe_safetensors(head, size)
    return None


def _blocked_global(exc: Exception) -> str | None:
    """The Python object a refused pickle asked for (e.g. 'builtins.open'), None if it names none."""
    text = str(exc)
    match = re.search(r"GLOBAL ([\w.]+)", text) or re.search(r"[Uu]nsupported (?:global|class):? ([\w.]+)", text)
    return match.group(1) if match else None


def _unpickling_detail(exc: Exception) -> str:
    """A short excerpt of a safe-loading error, without torch's advice to turn safe loading off."""
    lines = [ln.strip() for ln in str(exc).splitlines()
             if ln.strip() and "weights_only" not in ln and "documentation" not in ln]
    return (lines[-1] if lines else type(exc).__name__)[:160]


def _zip_names(path: Path) -> list[str] | None:
    """The member names of a zip-format torch file, or None when its archive index is unreadable."""
    try:
        with zipfile.ZipFile(path) as zf:
            return zf.namelist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, UnicodeDecodeError):
        return None


def load_checkpoint(path, *, verify_hash: bool = True) -> dict:
    """Load a training checkpoint safely (``weights_only=True``) or raise one clear CheckpointError."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes)")
    with open(path, "rb") as fh:
        head = fh.read(64)
    reason = _describe_foreign(path, head, size)
    if reason:
        raise CheckpointError(f"cannot use {path} as a checkpoint: {reason}")
    if not head.startswith(b"PK") and not head.startswith(b"\x80"):
        raise CheckpointError(f"cannot use {path} as a checkpoint: its content is not a PyTorch file "
                              f"(damaged, or another kind of file)")
    names = _zip_names(path) if head.startswith(b"PK") else []
    if names and any(n.split("/", 1)[-1].startswith("code/") or n.endswith("/constants.pkl") for n in names):
        raise CheckpointError(f"cannot use {path} as a checkpoint: this is an exported model "
                              f"(TorchScript), not a training checkpoint")
    if names and any(n.endswith("archive_format") for n in names) and any("/models/" in n for n in names):
        raise CheckpointError(f"cannot use {path} as a checkpoint: this is an exported model "
                              f"(torch.export .pt2), not a training checkpoint")
    if verify_hash:  # before unpickling anything: a modified or damaged file is named as such
        verify_checkpoint_hash(path)
    if names is None:
        raise CheckpointError(f"checkpoint {path} is truncated or damaged (not a complete archive)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:  # never retried without weights_only: that would run the payload
        blocked = _blocked_global(exc)
        if blocked:
            raise CheckpointError(f"refused to load {path}: it is not a plain weights file (it holds a pickled "
                                  f"Python object, {blocked}, that could run code when loaded); nothing from "
                                  f"it was executed") from None
        raise CheckpointError(f"refused to load {path}: it is damaged or not a plain weights file (safe loading "
                              f"stopped: {_unpickling_detail(exc)})") from None
    except (RuntimeError, EOFError, OSError, ValueError, UnicodeDecodeError, zipfile.BadZipFile,
            KeyError, AttributeError, TypeError, IndexError) as exc:
        raise CheckpointError(f"checkpoint {path} is truncated or damaged: {str(exc).splitlines()[0][:160]}") from None
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(f"{path} is not an SSL Workbench training checkpoint (no 'model' entry)")
    return state
