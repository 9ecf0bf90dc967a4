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
    tmp = path.with_name(f"{path.name}{TEMP_MARK}{os.getpid()}")
    with open(tmp, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def save_checkpoint(state: dict, path) -> Path:
    """Write ``state`` (state dicts and plain values only) atomically to ``path`` with its hash."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}{TEMP_MARK}{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            torch.save(state, fh)
            fh.flush()
            os.fsync(fh.fileno())
        new_hash = file_sha256(tmp)
        hash_file = _hash_path(path)
        old = _read_hashes(hash_file)[:1]
        _write_text_atomic(hash_file, "\n".join([new_hash, *old]) + "\n")  # both valid during swap
        os.replace(tmp, path)
        _fsync_dir(path.parent)
        _write_text_atomic(hash_file, new_hash + "\n")
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


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


def _describe_foreign(path: Path, head: bytes) -> str | None:
    """A reason why ``path`` is not a training checkpoint, from its first bytes (None if unsure)."""
    if head.startswith(b"\xff\xd8\xff"):
        return "it is a JPEG image, not a checkpoint"
    if head.startswith(b"\x89PNG"):
        return "it is a PNG image, not a checkpoint"
    if path.suffix == ".onnx" or head[:2] == b"\x08\x03" or head[:1] == b"\x08" and b"onnx" in head[:64].lower():
        return "this is an exported model (ONNX), not a training checkpoint"
    if path.suffix == ".safetensors":
        return "this is an exported model (safetensors), not a training checkpoint"
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
    reason = _describe_foreign(path, head)
    if reason:
        raise CheckpointError(f"cannot use {path} as a checkpoint: {reason}")
    if not head.startswith(b"PK") and not head.startswith(b"\x80"):
        raise CheckpointError(f"cannot use {path} as a checkpoint: its content is not a PyTorch file "
                              f"(damaged, or another kind of file)")
    if head.startswith(b"PK"):
        try:
            with zipfile.ZipFile(path) as zf:
                names = zf.namelist()
        except zipfile.BadZipFile:
            raise CheckpointError(f"checkpoint {path} is truncated or damaged (not a complete archive)") from None
        if any(n.split("/", 1)[-1].startswith("code/") or n.endswith("/constants.pkl") for n in names):
            raise CheckpointError(f"cannot use {path} as a checkpoint: this is an exported model "
                                  f"(TorchScript), not a training checkpoint")
    if verify_hash:
        verify_checkpoint_hash(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(f"refused to load {path}: it is not a plain weights file (it holds pickled "
                              f"objects that safe loading does not allow: {str(exc).splitlines()[0][:160]})") from None
    except (RuntimeError, EOFError, OSError, ValueError, UnicodeDecodeError, zipfile.BadZipFile) as exc:
        raise CheckpointError(f"checkpoint {path} is truncated or damaged: {str(exc).splitlines()[0][:160]}") from None
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(f"{path} is not an SSL Workbench training checkpoint (no 'model' entry)")
    return state
