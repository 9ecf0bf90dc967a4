"""TensorBoard sink (read back with tensorboard's own reader), projector files, metrics CSV."""

import csv

import numpy as np
import pytest

from backend.errors import ConfigError
from backend.events import EventWriter
from backend.metrics_csv import MetricsCsvSink, metric_rows, write_metrics_csv
from backend.tensorboard_log import MISSING_MESSAGE, TensorBoardSink, write_projector
from tests.backend.trainer_helpers import make_run

tb = pytest.importorskip("tensorboard", reason="tensorboard not installed (pip install 'ssl-workbench[tensorboard]')")


def _fake_training(run_dir, sinks):
    w = EventWriter(run_dir / "events.jsonl", echo=False, on_event=lambda e: [s(e) for s in sinks])
    w.status("started")
    for step in range(5):
        w.metric("loss", 2.0 - 0.1 * step, step, step // 2)
        if step % 2:
            w.metric("knn_top1", 0.1 * step, step, step // 2)
    w.status("finished")
    w.close()


def test_sink_scalars_and_images_read_by_tensorboard(tmp_path):
    import torch
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = make_run(tmp_path)
    sink = TensorBoardSink(run / "tensorboard")
    _fake_training(run, [sink.on_event])
    sink.add_augmentation_pairs(torch.rand(3, 2, 3, 8, 8))
    sink.close()
    acc = EventAccumulator(str(run / "tensorboard"))
    acc.Reload()
    assert sorted(acc.Tags()["scalars"]) == ["knn_top1", "loss"]
    loss = acc.Scalars("loss")
    assert [s.step for s in loss] == [0, 1, 2, 3, 4]
    assert np.allclose([s.value for s in loss], [2.0, 1.9, 1.8, 1.7, 1.6])
    assert [s.step for s in acc.Scalars("knn_top1")] == [1, 3]
    assert acc.Tags()["images"] == ["augmentation_pairs"]
    img = acc.Images("augmentation_pairs")[0]
    assert (img.width, img.height) == (2 * 10 + 2, 3 * 10 + 2)  # 2 columns, 3 rows, 2 px padding
    with pytest.raises(ConfigError, match="augmentation pairs"):
        sink.add_augmentation_pairs(torch.rand(3, 3, 8, 8))


def hide_tensorboard(monkeypatch) -> None:
    """Make every import of tensorboard (and torch.utils.tensorboard) fail, as when it is not installed."""
    import builtins

    real = builtins.__import__

    def no_tb(name, *a, **k):
        if name.startswith("tensorboard") or name == "torch.utils.tensorboard":
            raise ImportError(name)
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_tb)


def test_missing_tensorboard_is_a_clear_error(monkeypatch):
    hide_tensorboard(monkeypatch)
    with pytest.raises(ConfigError) as exc:
        TensorBoardSink("unused")
    assert str(exc.value) == MISSING_MESSAGE


def test_projector_files(tmp_path):
    x = np.arange(12, dtype=np.float32).reshape(4, 3)
    thumbs = np.random.default_rng(0).random((4, 3, 5, 6))
    cfg = write_projector(x, [0, 1, 1, 0], thumbs, tmp_path / "proj", class_names=["cat", "dog"])
    text = cfg.read_text()
    assert 'tensor_path: "tensors.tsv"' in text and 'metadata_path: "metadata.tsv"' in text
    assert 'image_path: "sprite.png"' in text and text.count("single_image_dim") == 2
    from google.protobuf import text_format
    from tensorboard.plugins.projector.projector_config_pb2 import ProjectorConfig
    parsed = text_format.Parse(text, ProjectorConfig())  # tensorboard's own schema
    emb = parsed.embeddings[0]
    assert (emb.tensor_path, emb.metadata_path, emb.sprite.image_path) == ("tensors.tsv", "metadata.tsv", "sprite.png")
    assert list(emb.sprite.single_image_dim) == [6, 5]
    assert np.allclose(np.loadtxt(tmp_path / "proj" / "tensors.tsv", delimiter="\t"), x)
    assert (tmp_path / "proj" / "metadata.tsv").read_text().split() == ["cat", "dog", "dog", "cat"]
    from PIL import Image
    assert Image.open(tmp_path / "proj" / "sprite.png").size == (2 * 6, 2 * 5)
    with pytest.raises(ConfigError, match="3 labels for 4"):
        write_projector(x, [0, 1, 1], None, tmp_path / "p2")


def test_metrics_csv_full_and_incremental(tmp_path, capsys):
    from backend.cli import main

    run = make_run(tmp_path)
    sink = MetricsCsvSink(run / "live.csv")
    _fake_training(run, [sink.on_event])
    sink.close()
    path = write_metrics_csv(run)
    rows = list(csv.DictReader(path.open()))
    assert len(rows) == 7 and list(rows[0]) == ["step", "epoch", "name", "value", "time"]
    assert [(r["step"], r["name"]) for r in rows[:3]] == [("0", "loss"), ("1", "knn_top1"), ("1", "loss")]
    assert float(rows[2]["value"]) == 1.9 and rows[2]["epoch"] == "0"
    live = list(csv.DictReader((run / "live.csv").open()))
    assert sorted((r["step"], r["name"], r["value"]) for r in live) == \
        sorted((r["step"], r["name"], r["value"]) for r in rows)
    assert len(metric_rows(run)) == 7
    assert main(["export-csv", "--run-dir", str(run), "--out", str(tmp_path / "m.csv")]) == 0
    assert (tmp_path / "m.csv").read_text() == path.read_text()


def test_checkpoint_projector(tmp_path):
    from PIL import Image

    from backend.tensorboard_log import checkpoint_projector
    from tests.backend.inspect_helpers import copy_run

    run = copy_run("cnn", tmp_path)
    cfg = checkpoint_projector(run, limit=20, thumb_size=8)
    assert cfg.parent == run / "tensorboard" / "projector-last"
    assert len((cfg.parent / "tensors.tsv").read_text().splitlines()) == 20
    assert len((cfg.parent / "metadata.tsv").read_text().splitlines()) == 20
    assert Image.open(cfg.parent / "sprite.png").size == (5 * 8, 5 * 8)
