"""Checkpoint files: atomic save, content hash, safe loading of strangers' files."""

import os
import pickle

import pytest
import torch

from backend.checkpoint import clean_stale_temp_files, load_checkpoint, save_checkpoint
from backend.errors import CheckpointError


def _state():
    return {"model": {"w": torch.randn(4, 4)}, "step": 3, "config": {"a": 1}}


def test_round_trip_and_hash(tmp_path):
    path = save_checkpoint(_state(), tmp_path / "last.pt")
    assert (tmp_path / "last.pt.sha256").exists()
    assert load_checkpoint(path)["step"] == 3
    assert [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name] == []


def test_flipped_byte_is_detected(tmp_path):
    path = save_checkpoint(_state(), tmp_path / "last.pt")
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="content hash"):
        load_checkpoint(path)


class _Payload:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_payload_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    payload = _Payload()
    payload.marker = marker
    path = tmp_path / "evil.pt"
    torch.save({"model": {}, "x": payload}, path)
    with pytest.raises(CheckpointError, match="not a plain weights file"):
        load_checkpoint(path)
    assert not marker.exists()


@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.99])
def test_truncated(tmp_path, fraction):
    path = save_checkpoint(_state(), tmp_path / "last.pt")
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(CheckpointError, match="last.pt"):
        load_checkpoint(path, verify_hash=False)


def test_empty_and_jpeg(tmp_path):
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        load_checkpoint(empty)
    jpeg = tmp_path / "photo.pt"
    jpeg.write_bytes(b"\xff\xd8\xff\xe0" + b"0" * 100)
    with pytest.raises(CheckpointError, match="JPEG"):
        load_checkpoint(jpeg)


def test_torchscript_is_an_exported_model(tmp_path):
    path = tmp_path / "model.pt"
    torch.jit.script(torch.nn.Linear(2, 2)).save(str(path))
    with pytest.raises(CheckpointError, match="exported model"):
        load_checkpoint(path)


def test_stale_temp_files_cleaned(tmp_path):
    (tmp_path / "last.pt.tmp-123").write_bytes(b"partial")
    assert len(clean_stale_temp_files(tmp_path)) == 1
    assert list(tmp_path.iterdir()) == []
