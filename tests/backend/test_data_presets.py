"""ImageNet-100 and STL-10: the class list resource, data.classes_file for image folders, the
STL-10 unlabelled split, and presets that say clearly when their data is absent."""

import re
import socket
import urllib.error

import numpy as np
import pytest
from PIL import Image

from backend.config import DataConfig, load_preset
from backend.data.class_filter import RESOURCES, read_classes_file
from backend.data.registry import check_source, known_num_classes
from backend.data.sources import load_dataset
from backend.errors import DataError

from .trainer_helpers import run_cli


def test_imagenet100_list_is_the_100_cmc_wordnet_ids():
    names = read_classes_file("imagenet100_classes.txt")          # a bare name: found in resources/
    assert len(names) == 100 == len(set(names))
    assert all(re.fullmatch(r"n\d{8}", n) for n in names)
    assert names[:3] == ["n02869837", "n01749939", "n02488291"]   # CMC's file order
    assert (RESOURCES / "imagenet100_classes.txt").is_file()


def _tree(root, classes=("n01", "n02", "n03"), per_class=3):
    for split in ("train", "val"):
        for c in classes:
            (root / split / c).mkdir(parents=True)
            for i in range(per_class):
                Image.new("RGB", (20 + i, 12), (i * 40, 10, 200)).save(root / split / c / f"{i}.JPEG")


def test_classes_file_keeps_only_the_listed_class_folders(tmp_path):
    _tree(tmp_path / "imnet")
    listed = tmp_path / "two.txt"
    listed.write_text("# a subset\nn03\n\nn01  # trailing comment\n")
    cfg = DataConfig(source=f"imagefolder:{tmp_path / 'imnet'}", classes_file=str(listed), image_size=8)
    train, val = load_dataset(cfg, "train"), load_dataset(cfg, "test")
    assert train.class_names == val.class_names == ["n01", "n03"]
    assert len(train) == len(val) == 6 and sorted(set(train.labels.tolist())) == [0, 1]
    assert known_num_classes(cfg) == 2 and check_source(cfg) is None
    every = DataConfig(source=cfg.source, image_size=8)
    assert len(load_dataset(every, "train")) == 9 and known_num_classes(every) == 3


def test_classes_file_problems_are_data_errors(tmp_path):
    _tree(tmp_path / "imnet")
    source = f"imagefolder:{tmp_path / 'imnet'}"
    missing = tmp_path / "more.txt"
    missing.write_text("n01\nn07\n")
    with pytest.raises(DataError, match=r"lacks 1 of the 2 classes of data\.classes_file .*: n07"):
        load_dataset(DataConfig(source=source, classes_file=str(missing), image_size=8), "train")
    assert "lacks 1 of the 2 classes" in check_source(DataConfig(source=source, classes_file=str(missing)))
    with pytest.raises(DataError, match=r"data\.classes_file 'nope\.txt' does not exist"):
        load_dataset(DataConfig(source=source, classes_file="nope.txt", image_size=8), "train")
    dup = tmp_path / "dup.txt"
    dup.write_text("n01\nn01\n")
    with pytest.raises(DataError, match="more than once"):
        load_dataset(DataConfig(source=source, classes_file=str(dup), image_size=8), "train")


def test_imagenet100_preset_without_the_data_is_one_clear_sentence(tmp_path):
    cfg = load_preset("imagenet100")
    assert cfg.data.classes_file == "imagenet100_classes.txt" and cfg.data.image_size == 128
    assert "does not exist" in check_source(cfg)
    out = run_cli("train", "--preset", "imagenet100", "--set", f"data.source=imagefolder:{tmp_path / 'none'}",
                  "--set", f"data.cache_dir={tmp_path / 'cache'}", "--run-dir", tmp_path / "run")
    assert out.returncode == 3, out.stderr[-2000:]
    assert "does not exist" in out.stdout + out.stderr and "Traceback" not in out.stdout + out.stderr


class FakeSTL10:
    splits = []

    def __init__(self, root, split="train", download=False):
        FakeSTL10.splits.append(split)
        n = {"train": 20, "train+unlabeled": 50, "test": 10}[split]
        self.data = np.random.default_rng(n).integers(0, 256, (n, 3, 96, 96), dtype=np.uint8)
        self.labels = np.where(np.arange(n) < 20, np.arange(n) % 10, -1)
        self.classes = [f"c{i}" for i in range(10)]


def test_stl10_unlabeled_training_split(tmp_path, monkeypatch):
    import torchvision.datasets as tvd

    monkeypatch.setattr(tvd, "STL10", FakeSTL10)
    cfg = load_preset("stl10").data
    cfg.cache_dir = str(tmp_path / "cache")
    train, test = load_dataset(cfg, "train"), load_dataset(cfg, "test")
    assert FakeSTL10.splits == ["train+unlabeled", "test"]
    assert len(train) == 50 and train.labels is None and train.images.shape[-1] == 96
    assert len(test) == 10 and test.labelled
    cfg.stl10_unlabeled = False
    assert len(load_dataset(cfg, "train")) == 20                  # a different cache entry


def test_stl10_preset_offline_is_a_data_error(tmp_path, monkeypatch):
    import torchvision.datasets.stl10 as tv_stl

    def offline(*a, **k):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(tv_stl, "download_and_extract_archive", offline)
    monkeypatch.setattr(socket.socket, "connect", offline)
    cfg = load_preset("stl10").data
    cfg.download_root, cfg.cache_dir = str(tmp_path / "dl"), str(tmp_path / "cache")
    with pytest.raises(DataError, match=r"could not download stl10 .*offline"):
        load_dataset(cfg, "train")
