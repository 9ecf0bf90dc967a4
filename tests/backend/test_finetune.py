"""Fine-tuning evaluation: learns end to end, leaves the checkpoint alone, records, cancels, refuses."""

import hashlib
import shutil
from pathlib import Path

import pytest
import torch

from backend.cli import main
from backend.errors import ConfigError, DataError
from backend.finetune import fine_tune, finetune_augment
from backend.errors import Cancelled
from backend.runs import checkpoint_path, read_evaluations

from backend.train import run_training

from .trainer_helpers import make_run

COLOURS = {"red": (200, 30, 30), "green": (30, 180, 40), "blue": (40, 50, 210)}


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_colour_folder(root: Path, per_class: dict) -> Path:
    """root/{train,test}/<colour>/*.png: noisy 16 px squares whose class is their colour."""
    from PIL import Image
    g = torch.Generator().manual_seed(0)
    for split, n in per_class.items():
        for name, rgb in COLOURS.items():
            (root / split / name).mkdir(parents=True)
            for i in range(n):
                noise = torch.randint(-40, 41, (16, 16, 3), generator=g)
                pixels = (torch.tensor(rgb) + noise).clamp(0, 255).to(torch.uint8).numpy()
                Image.fromarray(pixels).save(root / split / name / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def colour_run(tmp_path_factory) -> Path:
    """A run (one SSL epoch) on a folder whose 3 classes a fine-tuned encoder must separate."""
    root = tmp_path_factory.mktemp("ft")
    data = write_colour_folder(root / "colours", {"train": 32, "test": 16})
    run = make_run(root, data={"source": f"imagefolder:{data}", "image_size": 16},
                   optim={"batch_size": 32}, schedule={"epochs": 1},
                   eval={"probe_batch_size": 32, "knn_every_epochs": 0})
    assert run_training(run, echo=False) == 0
    return run


def copy_run(run: Path, dest: Path) -> Path:
    return Path(shutil.copytree(run, dest / run.name))


def test_fine_tune_learns_the_classes_and_leaves_the_checkpoint_alone(tmp_path, colour_run):
    run = copy_run(colour_run, tmp_path)
    ckpt_hash = digest(checkpoint_path(run))
    before = len(read_evaluations(run))
    seen = []
    result = fine_tune(run, epochs=6, lr=0.5, batch_size=16, progress=lambda f, m: seen.append((f, m)))
    # 3 classes, 48 test images: chance is 1/3; colour is kept by the crop+flip augmentation.
    assert result["kind"] == "finetune" and result["top1"] > 0.9, result
    cm = torch.tensor(result["confusion"])
    assert cm.sum() == result["queries"] == 48
    assert cm.diagonal().sum().item() / 48 == pytest.approx(result["top1"])
    assert result["top1"] <= result["top5"]
    assert digest(checkpoint_path(run)) == ckpt_hash
    stored = read_evaluations(run)
    assert len(stored) == before + 1 and stored[-1]["kind"] == "finetune"
    assert stored[-1]["top1"] == pytest.approx(result["top1"])
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0


def backbone_weights(ckpt_path) -> dict:
    """The backbone's parameters (not its batch-norm statistics) stored in a checkpoint."""
    from backend.checkpoint import load_checkpoint
    from backend.restore import restore_method
    method = restore_method(checkpoint=ckpt_path)[0]
    names = [f"backbone.{n}" for n, _ in method.backbone.named_parameters()]
    model = load_checkpoint(ckpt_path)["model"]
    return {n: model[n] for n in names}


def test_the_backbone_is_trained_unless_its_lr_scale_is_zero(tmp_path, colour_run):
    """The fine-tune run starts from the checkpoint's backbone: after fine-tuning most of its
    weights moved; with backbone_lr_scale = 0 they are exactly the checkpoint's."""
    run = copy_run(colour_run, tmp_path)
    original = backbone_weights(checkpoint_path(run))

    tuned_run = Path(fine_tune(run, epochs=2, lr=0.5, batch_size=16, record=False)["finetune_run"])
    tuned = backbone_weights(checkpoint_path(tuned_run))
    assert tuned.keys() == original.keys()
    assert sum(not torch.equal(original[n], tuned[n]) for n in original) > len(original) // 2

    frozen_run = Path(fine_tune(run, epochs=2, lr=0.5, batch_size=16, backbone_lr_scale=0.0,
                                record=False)["finetune_run"])
    frozen = backbone_weights(checkpoint_path(frozen_run))
    assert all(torch.equal(original[n], frozen[n]) for n in original)
    assert read_evaluations(run) == read_evaluations(colour_run)  # record=False: the source is untouched


def test_a_fine_tune_run_is_a_normal_run_trained_by_sslwb_train(tmp_path, colour_run):
    """create_finetune_run makes a run directory beside the source; the trainer process trains it
    and records the result in both runs; the source checkpoint is not modified."""
    from backend.finetune import create_finetune_run
    from backend.runs import read_run_config, summarize_run

    from .trainer_helpers import run_cli

    run = copy_run(colour_run, tmp_path)
    ckpt_hash = digest(checkpoint_path(run))
    ft = create_finetune_run(run, epochs=1, batch_size=16, lr=0.5)
    cfg = read_run_config(ft)
    assert cfg.method.name == "finetune" and cfg.optim.nesterov and cfg.optim.backbone_lr_scale == 0.1
    assert cfg.model.init_checkpoint == str(checkpoint_path(run).resolve()) and run.name in cfg.name
    assert (cfg.augment.num_global_crops, cfg.augment.jitter_prob) == (1, 0.0)
    result = run_cli("train", "--run-dir", ft)
    assert result.returncode == 0, result.stderr
    assert summarize_run(ft).state == "finished"
    mine, theirs = read_evaluations(ft)[-1], read_evaluations(run)[-1]
    assert mine["kind"] == theirs["kind"] == "finetune" and mine["top1"] == theirs["top1"]
    assert theirs["finetune_run"] == str(ft) and len(theirs["confusion"]) == 3
    assert digest(checkpoint_path(run)) == ckpt_hash


def test_cancel_records_nothing(tmp_path, colour_run):
    run = copy_run(colour_run, tmp_path)
    before = read_evaluations(run)
    calls = []

    def cancelled():
        calls.append(1)
        return len(calls) > 5

    with pytest.raises(Cancelled):
        fine_tune(run, epochs=3, batch_size=16, cancelled=cancelled)
    assert read_evaluations(run) == before


def test_bad_settings_and_unlabelled_data_are_refused(tmp_path, colour_run):
    run = colour_run
    with pytest.raises(ConfigError, match="epochs must be at least 1"):
        fine_tune(run, epochs=0)
    with pytest.raises(ConfigError, match="lr must be a positive number"):
        fine_tune(run, lr=float("nan"))
    flat = tmp_path / "flat"
    flat.mkdir()
    from PIL import Image
    for i in range(32):
        Image.new("RGB", (16, 16), (i * 7, 0, 0)).save(flat / f"{i}.png")
    unlabelled = make_run(tmp_path / "u", data={"source": f"imagefolder:{flat}", "image_size": 16},
                          optim={"batch_size": 16}, eval={"probe_batch_size": 16, "knn_every_epochs": 0},
                          schedule={"epochs": 1})
    from backend.train import run_training
    assert run_training(unlabelled, echo=False) == 0
    with pytest.raises(DataError, match="needs labels"):
        fine_tune(unlabelled, epochs=1)


def test_augmentation_is_crop_and_flip_only():
    from backend.config import AugmentConfig
    aug = finetune_augment(AugmentConfig())
    assert (aug.jitter_prob, aug.grayscale_prob, aug.blur_prob, aug.solarize_prob) == (0, 0, 0, 0)
    assert aug.num_global_crops == 1 and aug.num_local_crops == 0 and aug.crop_scale == [0.2, 1.0]


def test_cli_fine_tune(tmp_path, capsys, colour_run):
    run = copy_run(colour_run, tmp_path)
    assert main(["inspect", "--run-dir", str(run), "fine-tune", "--epochs", "1", "--batch-size", "16"]) == 0
    out = capsys.readouterr().out
    assert "fine-tune top-1" in out and "top-3" in out  # 3 classes: top-k is capped at the class count
    assert read_evaluations(run)[-1]["kind"] == "finetune"
