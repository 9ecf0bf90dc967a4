"""runtime.tensorboard: a real short run read back with tensorboard's own reader; off by default;
a clear error before training when tensorboard is missing."""

import numpy as np
import pytest

from backend.events import read_events
from backend.tensorboard_log import MISSING_MESSAGE
from backend.train import run_training
from tests.backend.trainer_helpers import make_run

from .test_tensorboard_log import hide_tensorboard

SHORT = dict(schedule={"epochs": 2, "warmup_epochs": 0}, eval={"probe_batch_size": 64, "metrics_every_steps": 2,
             "knn_k": 10, "spectrum_every_steps": 2})


def test_tensorboard_run_writes_scalars_images_and_projector(tmp_path):
    pytest.importorskip("tensorboard", reason="tensorboard not installed (pip install 'ssl-workbench[tensorboard]')")
    from google.protobuf import text_format
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.projector.projector_config_pb2 import ProjectorConfig

    run = make_run(tmp_path, runtime={"tensorboard": True}, **SHORT)
    assert run_training(run, echo=False) == 0
    events = read_events(run / "events.jsonl")
    metrics = [e for e in events if e["kind"] == "metric"]
    scalar_names = {e["name"] for e in metrics if isinstance(e.get("value"), (int, float))}
    assert {"loss", "lr", "alignment", "uniformity", "embedding_std", "knn_top1"} <= scalar_names

    acc = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert scalar_names <= tags
    assert {"rankme", "alpha_req", "backbone_rankme"} <= tags  # from the spectrum events
    loss = {e["step"]: e["value"] for e in metrics if e["name"] == "loss"}
    assert {s.step: s.value for s in acc.Scalars("loss")} == pytest.approx(loss)
    spectra = [e for e in metrics if e["name"] == "spectrum"]
    assert [s.step for s in acc.Scalars("rankme")] == [e["step"] for e in spectra]
    assert np.allclose([s.value for s in acc.Scalars("rankme")], [e["rankme"] for e in spectra])
    assert acc.Tags()["images"] == ["augmentation_pairs"]
    grid = acc.Images("augmentation_pairs")[0]
    assert (grid.step, grid.width, grid.height) == (0, 2 * 34 + 2, 8 * 34 + 2)  # 8 rows of two 32 px views

    checkpoints = [e["step"] for e in events if e["kind"] == "status" and e["state"] == "checkpoint"]
    assert len(checkpoints) == 2
    config = text_format.Parse((run / "tensorboard" / "projector_config.pbtxt").read_text(), ProjectorConfig())
    assert [e.tensor_name for e in config.embeddings] == [f"backbone:{s:05d}" for s in checkpoints]
    for entry in config.embeddings:
        tensors = np.loadtxt(run / "tensorboard" / entry.tensor_path, delimiter="\t")
        labels = (run / "tensorboard" / entry.metadata_path).read_text().split()
        assert tensors.shape[0] == len(labels) == 128 and np.isfinite(tensors).all()
        assert (run / "tensorboard" / entry.sprite.image_path).is_file()


def test_tensorboard_is_off_by_default(tmp_path):
    run = make_run(tmp_path, schedule={"epochs": 1, "warmup_epochs": 0, "max_steps": 2})
    assert run_training(run, echo=False) == 0
    assert not (run / "tensorboard").exists()


def test_missing_tensorboard_fails_before_training(tmp_path, monkeypatch):
    hide_tensorboard(monkeypatch)
    run = make_run(tmp_path, runtime={"tensorboard": True})
    assert run_training(run, echo=False) == 2
    events = read_events(run / "events.jsonl")
    errors = [e for e in events if e["kind"] == "error"]
    assert [e["message"] for e in errors] == [MISSING_MESSAGE]
    assert "runtime.tensorboard" in MISSING_MESSAGE and "pip install" in MISSING_MESSAGE
    assert not any(e["kind"] == "metric" and e["name"] == "loss" for e in events)
    assert not (run / "checkpoints" / "last.pt").exists()
