"""Fine-tuning on 1 % / 10 % of the labels: the class-balanced subset the engine trains on, and
the fraction recorded with the result."""

import dataclasses

import numpy as np
import pytest
import torch

from backend.cli import main
from backend.config import ExperimentConfig
from backend.data.types import ImageDataset
from backend.errors import ConfigError
from backend.finetune import create_finetune_run, fine_tune
from backend.label_subsets import balanced_subset
from backend.methods import METHODS
from backend.runs import read_evaluations, read_run_config, run_events
from backend.train import run_training

from .test_finetune import write_colour_folder
from .trainer_helpers import make_run


class _Events:
    def __init__(self):
        self.logs = []

    def log(self, message, **extra):
        self.logs.append((message, extra))


def _cifar_like() -> ImageDataset:
    labels = torch.from_numpy(np.repeat(np.arange(10), 500))  # 10 classes x 500, as CIFAR-10 / 10
    images = torch.arange(len(labels), dtype=torch.int64).remainder(256).to(torch.uint8).view(-1, 1, 1, 1)
    return ImageDataset(images=images.expand(-1, 3, 2, 2).contiguous(), labels=labels,
                        class_names=[str(c) for c in range(10)], source="synthetic", split="train")


@pytest.mark.parametrize("fraction,per_class", [(0.01, 5), (0.1, 50)])
def test_the_engine_trains_on_the_class_balanced_subset(fraction, per_class):
    train = _cifar_like()
    cfg = ExperimentConfig.from_dict({"method": {"name": "finetune", "label_fraction": fraction, "subset_seed": 3},
                                      "optim": {"batch_size": 16}})
    events = _Events()
    subset = METHODS["finetune"].training_subset(cfg, train, events)
    assert np.bincount(subset.labels.numpy(), minlength=10).tolist() == [per_class] * 10
    expected = balanced_subset(train.labels.numpy(), fraction, seed=3)
    assert torch.equal(subset.labels, train.labels[expected]) and torch.equal(subset.images, train.images[expected])
    again = METHODS["finetune"].training_subset(cfg, train, _Events())
    assert torch.equal(again.images, subset.images)  # a seed names the subset
    assert events.logs[0][1] == {"label_fraction": fraction, "subset_size": 10 * per_class}
    mapped = dataclasses.replace(train, images_path="/cache/images.npy")  # data.memory streams this file's rows
    assert METHODS["finetune"].training_subset(cfg, mapped, _Events()).images_path == ""  # the subset is held
    whole = cfg.updated({"method": {"label_fraction": 1.0}})
    assert METHODS["finetune"].training_subset(whole, train, _Events()) is train
    too_big = cfg.updated({"optim": {"batch_size": 64}}) if fraction == 0.01 else None
    if too_big is not None:
        with pytest.raises(ConfigError, match="optim.batch_size must be <= the 50 images of the 0.01 label subset"):
            METHODS["finetune"].training_subset(too_big, train, _Events())


def test_label_fraction_is_validated():
    with pytest.raises(ConfigError, match="method.label_fraction must be <= 1"):
        ExperimentConfig.from_dict({"method": {"name": "finetune", "label_fraction": 1.5}})
    with pytest.raises(ConfigError, match="method.label_fraction must be > 0"):
        ExperimentConfig.from_dict({"method": {"name": "finetune", "label_fraction": 0.0}})


@pytest.fixture(scope="module")
def colour_run(tmp_path_factory):
    """One SSL epoch on 3 colour classes x 100 training images."""
    root = tmp_path_factory.mktemp("ftf")
    data = write_colour_folder(root / "colours", {"train": 100, "test": 10})
    run = make_run(root, data={"source": f"imagefolder:{data}", "image_size": 16}, optim={"batch_size": 50},
                   schedule={"epochs": 1}, eval={"probe_batch_size": 32, "knn_every_epochs": 0})
    assert run_training(run, echo=False) == 0
    return run


def test_fine_tune_on_ten_percent_records_the_fraction(colour_run):
    result = fine_tune(colour_run, epochs=1, lr=0.5, batch_size=16, label_fraction=0.1, subset_seed=2)
    assert result["label_fraction"] == 0.1 and result["subset_seed"] == 2
    assert result["subset_size"] == result["bank_size"] == 30  # 10 of each class's 100
    assert result["queries"] == 30
    stored = read_evaluations(colour_run)[-1]
    assert stored["kind"] == "finetune" and stored["label_fraction"] == 0.1 and stored["subset_size"] == 30
    ft = result["finetune_run"]
    cfg = read_run_config(ft)
    assert (cfg.method.label_fraction, cfg.method.subset_seed) == (0.1, 2)
    logs = [e for e in run_events(ft) if e["kind"] == "log" and "subset_size" in e]
    assert logs and logs[0]["subset_size"] == 30


def test_one_percent_caps_the_batch_and_the_cli_passes_the_fraction(colour_run, capsys):
    ft = create_finetune_run(colour_run, epochs=1, batch_size=16, label_fraction=0.01, record=False)
    assert read_run_config(ft).optim.batch_size == 3  # one image per class
    assert main(["inspect", "--run-dir", str(colour_run), "fine-tune", "--epochs", "1", "--batch-size", "16",
                 "--label-fraction", "0.1", "--subset-seed", "1", "--no-record"]) == 0
    out = capsys.readouterr().out
    assert "fine-tune top-1" in out and "30 train (0.1 of the labels, seed 1)" in out
    with pytest.raises(ConfigError, match="label_fraction must be in"):
        fine_tune(colour_run, epochs=1, label_fraction=2.0)
