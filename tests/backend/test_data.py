"""Data sources: synthetic shapes, image folders (layouts, decoding corner cases, skips), torchvision
sets (offline, conversion), and the on-disk uint8 cache (reuse, corruption, atomic writes)."""

from __future__ import annotations

import io
import os
import shutil
import time
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from backend.config import DataConfig
from backend.data import cache, imagefolder, synthetic
from backend.data.sources import (ImageDataset, balanced_subset, derive_rng, describe_source,
                                  holdout_split, load_dataset)
from backend.errors import DataError

from .trainer_helpers import CIFAR10

CIFAR_ROOT = CIFAR10


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    """Every test gets its own cache folder, never the home cache."""
    root = tmp_path / "cache"
    monkeypatch.setenv("SSLWB_CACHE_DIR", str(root))
    return root


def cfg(**kw) -> DataConfig:
    return DataConfig(**kw)


def save(path: Path, img: Image.Image, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, **kw)
    return path


def solid(colour, size=(24, 20), mode="RGB") -> Image.Image:
    return Image.new(mode, size, colour)


def make_class_tree(root: Path, classes: dict, n: int = 10) -> None:
    """root/<class>/<i>.png, solid images of the class colour with varying sizes."""
    for name, colour in classes.items():
        for i in range(n):
            save(root / name / f"{i:03d}.png", solid(colour, (20 + i, 16 + 2 * i)))


def entries(root: Path) -> list[str]:
    return sorted(os.listdir(root)) if root.exists() else []


# ---------------------------------------------------------------------------------------------
# synthetic

def test_synthetic_shapes_dtypes_names_and_balance():
    t = time.perf_counter()
    ds = load_dataset(cfg(synthetic_train_size=2000), "train", seed=0)
    print(f"synthetic 2000 x 32 px: {time.perf_counter() - t:.3f} s")
    assert isinstance(ds, ImageDataset) and ds.split == "train" and ds.source == "synthetic"
    assert ds.images.shape == (2000, 3, 32, 32) and ds.images.dtype == torch.uint8
    assert ds.images.is_contiguous()
    assert ds.labels.dtype == torch.int64 and ds.labelled and len(ds) == 2000
    assert ds.class_names == synthetic.CLASS_NAMES and len(ds.class_names) == 10
    assert ds.class_names[:3] == ["disc", "square", "triangle"]
    assert torch.bincount(ds.labels, minlength=10).tolist() == [200] * 10
    assert ds.skipped == []
    test = load_dataset(cfg(synthetic_test_size=500, image_size=24), "test", seed=0)
    assert test.images.shape == (500, 3, 24, 24)
    assert torch.bincount(test.labels, minlength=10).tolist() == [50] * 10


def test_synthetic_is_deterministic_and_splits_differ(cache_dir):
    a = load_dataset(cfg(synthetic_train_size=200), "train", seed=3)
    b = load_dataset(cfg(synthetic_train_size=200, cache_dir=str(cache_dir / "other")), "train", seed=3)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    c = load_dataset(cfg(synthetic_train_size=200), "train", seed=4)
    assert not torch.equal(a.images, c.images)
    t = load_dataset(cfg(synthetic_train_size=200, synthetic_test_size=200), "test", seed=3)
    assert not torch.equal(a.images, t.images)
    limited = load_dataset(cfg(synthetic_train_size=200, train_limit=50), "train", seed=3)
    assert len(limited) == 50 and torch.bincount(limited.labels).tolist() == [5] * 10


def test_synthetic_colour_does_not_predict_the_class():
    images, labels = synthetic.generate(3000, 32, derive_rng(0, "colour-test"))
    mean_rgb = images.reshape(len(images), 3, -1).mean(-1)          # (N, 3), 0..255
    overall = mean_rgb.mean(0)
    for c in range(10):
        assert np.abs(mean_rgb[labels == c].mean(0) - overall).max() < 20, synthetic.CLASS_NAMES[c]
    # A nearest-class-mean classifier on mean colour stays near chance (10 %).
    centroids = np.stack([mean_rgb[labels == c].mean(0) for c in range(10)])
    pred = np.argmin(((mean_rgb[:, None] - centroids[None]) ** 2).sum(-1), axis=1)
    assert (pred == labels).mean() < 0.25


# ---------------------------------------------------------------------------------------------
# image folders: layouts

COLOURS = {"apple": (255, 0, 0), "banana": (0, 255, 0), "cherry": (0, 0, 255)}


def test_imagefolder_class_subfolders_heldout_split(tmp_path):
    make_class_tree(tmp_path / "imgs", COLOURS, n=10)
    spec = f"imagefolder:{tmp_path / 'imgs'}"
    train = load_dataset(cfg(source=spec, val_fraction=0.2, image_size=16), "train", seed=1)
    test = load_dataset(cfg(source=spec, val_fraction=0.2, image_size=16), "test", seed=1)
    assert train.class_names == test.class_names == ["apple", "banana", "cherry"]
    assert len(train) == 24 and len(test) == 6
    assert torch.bincount(test.labels).tolist() == [2, 2, 2]
    assert train.images.shape == (24, 3, 16, 16) and train.images.dtype == torch.uint8
    for ds in (train, test):                       # every pixel is its class colour
        for img, label in zip(ds.images, ds.labels):
            expected = torch.tensor(COLOURS[ds.class_names[label]], dtype=torch.uint8)
            assert torch.equal(img[:, 8, 8], expected)
    again = load_dataset(cfg(source=spec, val_fraction=0.2, image_size=16), "test", seed=1)
    assert torch.equal(again.images, test.images)
    other = load_dataset(cfg(source=spec, val_fraction=0.2, image_size=16), "test", seed=2)
    assert len(other) == 6                         # same sizes, (almost surely) other files


def test_heldout_split_is_disjoint_and_covers_everything():
    labels = np.repeat(np.arange(4), [10, 5, 1, 2])
    tr, te = holdout_split(labels, len(labels), 0.2, derive_rng(0, "x"))
    assert set(tr).isdisjoint(te) and sorted(np.concatenate([tr, te])) == list(range(18))
    assert np.bincount(labels[te], minlength=4).tolist() == [2, 1, 0, 1]
    idx = balanced_subset(labels, len(labels), 8, derive_rng(0, "y"))
    assert len(idx) == 8 and np.bincount(labels[idx], minlength=4).min() >= 1


def test_imagefolder_train_test_subfolders(tmp_path):
    root = tmp_path / "ds"
    make_class_tree(root / "train", COLOURS, n=4)
    make_class_tree(root / "val", {"apple": (255, 0, 0), "cherry": (0, 0, 255)}, n=2)
    spec = f"imagefolder:{root}"
    train = load_dataset(cfg(source=spec, image_size=8), "train")
    test = load_dataset(cfg(source=spec, image_size=8), "test")
    assert train.class_names == test.class_names == ["apple", "banana", "cherry"]
    assert len(train) == 12 and len(test) == 4
    assert sorted(test.labels.tolist()) == [0, 0, 2, 2]
    assert torch.equal(test.images[test.labels == 2][0][:, 4, 4], torch.tensor([0, 0, 255], dtype=torch.uint8))


def test_imagefolder_flat_folder_is_unlabelled(tmp_path):
    for i in range(10):
        save(tmp_path / "flat" / f"img{i}.JPG", solid((10 * i, 100, 200), (30, 30)), quality=95)
    (tmp_path / "flat" / "notes.txt").write_text("not an image")
    spec = f"imagefolder:{tmp_path / 'flat'}"
    train = load_dataset(cfg(source=spec, val_fraction=0.3, image_size=16), "train")
    test = load_dataset(cfg(source=spec, val_fraction=0.3, image_size=16), "test")
    assert train.labels is None and not train.labelled and train.class_names == []
    assert len(train) == 7 and len(test) == 3
    assert train.images.shape == (7, 3, 16, 16)


# ---------------------------------------------------------------------------------------------
# image folders: decoding

def test_unreadable_files_are_skipped_and_named(tmp_path):
    make_class_tree(tmp_path / "d", {"a": (255, 0, 0), "b": (0, 255, 0)}, n=3)
    good = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(
        good, "JPEG", quality=90)
    (tmp_path / "d" / "a" / "truncated.jpg").write_bytes(good.getvalue()[: len(good.getvalue()) // 3])
    (tmp_path / "d" / "b" / "fake.jpg").write_bytes(b"this is not a jpeg at all")
    messages = []
    ds = load_dataset(cfg(source=f"imagefolder:{tmp_path / 'd'}", val_fraction=0.0), "train",
                      on_warning=messages.append)
    assert len(ds) == 6
    assert dict(ds.skipped) == {"a/truncated.jpg": "truncated", "b/fake.jpg": "not a readable image"}
    assert len(messages) == 1 and "skipped 2 unreadable images" in messages[0]
    assert "a/truncated.jpg (truncated)" in messages[0] and "b/fake.jpg" in messages[0]
    # From the cache the warning and the skipped list come back too.
    messages.clear()
    again = load_dataset(cfg(source=f"imagefolder:{tmp_path / 'd'}", val_fraction=0.0), "train",
                         on_warning=messages.append)
    assert again.skipped == ds.skipped and len(messages) == 1


def test_all_unreadable_is_a_data_error(tmp_path):
    (tmp_path / "bad").mkdir()
    for i in range(3):
        (tmp_path / "bad" / f"{i}.png").write_bytes(b"garbage")
    with pytest.raises(DataError, match="could be read"):
        load_dataset(cfg(source=f"imagefolder:{tmp_path / 'bad'}", val_fraction=0.0), "train")
    assert entries(Path(os.environ["SSLWB_CACHE_DIR"])) == []


def _decode(path: Path, size: int = 8) -> np.ndarray:
    return imagefolder.decode_image(path, size)


def test_modes_are_converted_to_rgb(tmp_path):
    # RGBA: transparent -> white background, half-transparent red -> pink.
    rgba = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    rgba.paste((255, 0, 0, 128), (0, 0, 4, 8))
    px = _decode(save(tmp_path / "rgba.png", rgba))
    assert px[4, 6].tolist() == [255, 255, 255]
    assert abs(int(px[4, 1, 1]) - 127) <= 2 and px[4, 1, 0] == 255
    # Palette with a transparent index.
    pal = Image.new("P", (8, 8), 0)
    pal.putpalette([0, 0, 0, 0, 0, 255] + [0] * 762)
    pal.paste(1, (0, 0, 8, 4))
    px = _decode(save(tmp_path / "pal.png", pal, transparency=0))
    assert px[1, 4].tolist() == [0, 0, 255] and px[6, 4].tolist() == [255, 255, 255]
    # CMYK (pure cyan).
    px = _decode(save(tmp_path / "cmyk.tif", Image.new("CMYK", (8, 8), (255, 0, 0, 0))))
    assert px[4, 4].tolist() == [0, 255, 255]
    # 16-bit grey: scaled, not clipped.
    grey = np.full((8, 8), 65535, dtype=np.uint16)
    grey[:, :4] = 32896                        # 128 * 257
    px = _decode(save(tmp_path / "grey16.png", Image.fromarray(grey)))
    assert Image.open(tmp_path / "grey16.png").mode.startswith("I")
    assert px[4, 6].tolist() == [255] * 3 and px[4, 1].tolist() == [128] * 3
    # Greyscale + 1-bit.
    assert _decode(save(tmp_path / "l.png", Image.new("L", (8, 8), 77)))[2, 2].tolist() == [77] * 3
    assert _decode(save(tmp_path / "one.bmp", Image.new("1", (8, 8), 1)))[2, 2].tolist() == [255] * 3


def test_exif_orientation_is_applied(tmp_path):
    img = Image.new("RGB", (32, 32), (0, 0, 255))
    img.paste((255, 0, 0), (0, 0, 32, 16))               # stored: red on top, blue below
    exif = Image.Exif()
    exif[0x0112] = 6                                     # display = rotate 90 degrees clockwise
    px = _decode(save(tmp_path / "rot.jpg", img, exif=exif.tobytes(), quality=95), size=32)
    assert px[16, 28, 0] > 200 and px[16, 28, 2] < 60    # red now on the right
    assert px[16, 3, 2] > 200 and px[16, 3, 0] < 60      # blue on the left


def test_resize_shorter_side_and_centre_crop(tmp_path):
    img = Image.new("RGB", (64, 32), (255, 0, 0))
    img.paste((0, 255, 0), (16, 0, 48, 32))              # centred 32x32 square is green
    px = _decode(save(tmp_path / "wide.png", img), size=16)
    assert px.shape == (16, 16, 3)
    assert px[:, 1:-1].reshape(-1, 3).tolist() == [[0, 255, 0]] * (16 * 14)


def test_decompression_bombs_are_refused(tmp_path, monkeypatch):
    root = tmp_path / "bombs"
    for i in range(3):
        save(root / f"ok{i}.png", solid((9, 9, 9), (20, 20)))
    save(root / "warn.png", solid((1, 2, 3), (40, 40)))  # 1600 px: between 1x and 2x the limit
    save(root / "big.png", solid((1, 2, 3), (64, 64)))   # 4096 px: above 2x the limit
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    messages = []
    ds = load_dataset(cfg(source=f"imagefolder:{root}", val_fraction=0.0, image_size=8), "train",
                      on_warning=messages.append)
    assert len(ds) == 3
    reasons = dict(ds.skipped)
    assert set(reasons) == {"warn.png", "big.png"}
    assert all("decompression bomb" in r for r in reasons.values())


def test_missing_empty_and_unknown_sources_raise_data_errors(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError, match=str(missing)):
        load_dataset(cfg(source=f"imagefolder:{missing}"), "train")
    empty = tmp_path / "empty"
    (empty / "cats").mkdir(parents=True)
    (empty / "readme.txt").write_text("no images here")
    with pytest.raises(DataError, match=f"{empty}.*no images"):
        load_dataset(cfg(source=f"imagefolder:{empty}"), "train")
    make_class_tree(tmp_path / "tiny", {"a": (1, 2, 3)}, n=3)
    with pytest.raises(DataError, match="val_fraction"):
        load_dataset(cfg(source=f"imagefolder:{tmp_path / 'tiny'}", val_fraction=0.0), "test")
    with pytest.raises(DataError, match="unknown data source"):
        load_dataset(cfg(source="mnist"), "train")
    with pytest.raises(ValueError):
        load_dataset(cfg(), "validation")


# ---------------------------------------------------------------------------------------------
# cache

def test_second_load_reads_the_cache_without_decoding(tmp_path, monkeypatch, cache_dir):
    make_class_tree(tmp_path / "d", COLOURS, n=5)
    c = cfg(source=f"imagefolder:{tmp_path / 'd'}", image_size=8, val_fraction=0.0)
    first = load_dataset(c, "train", seed=0)

    def no_decoding(*a, **k):
        raise AssertionError("decoded again although the cache is valid")

    monkeypatch.setattr(imagefolder, "decode_files", no_decoding)
    monkeypatch.setattr(synthetic, "generate", no_decoding)
    second = load_dataset(c, "train", seed=0)
    assert torch.equal(first.images, second.images) and torch.equal(first.labels, second.labels)
    assert second.class_names == first.class_names and second.images.is_contiguous()
    (entry,) = [p for p in cache_dir.iterdir()]
    assert sorted(os.listdir(entry)) == ["images.npy", "labels.npy", "meta.json"]
    # A changed file changes the fingerprint and so the key: it is decoded again.
    save(tmp_path / "d" / "apple" / "000.png", solid((1, 1, 1), (30, 30)))
    with pytest.raises(AssertionError, match="decoded again"):
        load_dataset(c, "train", seed=0)


def test_synthetic_is_cached_too(monkeypatch):
    load_dataset(cfg(synthetic_train_size=100), "train")
    monkeypatch.setattr(synthetic, "generate", lambda *a, **k: pytest.fail("regenerated"))
    assert len(load_dataset(cfg(synthetic_train_size=100), "train")) == 100


@pytest.mark.parametrize("damage", ["garbage", "truncate", "meta", "delete_labels"])
def test_corrupted_cache_entry_is_rebuilt(tmp_path, cache_dir, damage):
    make_class_tree(tmp_path / "d", COLOURS, n=4)
    c = cfg(source=f"imagefolder:{tmp_path / 'd'}", image_size=8, val_fraction=0.0)
    first = load_dataset(c, "train")
    (entry,) = list(cache_dir.iterdir())
    if damage == "garbage":
        (entry / "images.npy").write_bytes(b"\x93NUMPY garbage")
    elif damage == "truncate":
        data = (entry / "images.npy").read_bytes()
        (entry / "images.npy").write_bytes(data[:-50])
    elif damage == "meta":
        (entry / "meta.json").write_text("{not json")
    else:
        (entry / "labels.npy").unlink()
    rebuilt = load_dataset(c, "train")
    assert torch.equal(first.images, rebuilt.images) and torch.equal(first.labels, rebuilt.labels)
    assert len(list(cache_dir.iterdir())) == 1


def test_failed_cache_write_leaves_no_partial_entry(tmp_path, monkeypatch, cache_dir):
    real_save = np.save

    def failing_save(path, arr, **kw):
        real_save(path, arr[: len(arr) // 2], **kw)        # half written, then the disk is "full"
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cache.np, "save", failing_save)
    messages = []
    ds = load_dataset(cfg(synthetic_train_size=100), "train", on_warning=messages.append)
    assert len(ds) == 100                                  # the run goes on without a cache
    assert any("could not write the data cache" in m for m in messages)
    assert entries(cache_dir) == []
    monkeypatch.setattr(cache.np, "save", real_save)
    # A decode that dies half way leaves nothing either.
    monkeypatch.setattr(synthetic, "generate", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("killed")))
    with pytest.raises(RuntimeError):
        load_dataset(cfg(synthetic_train_size=120), "train")
    assert entries(cache_dir) == []


def test_leftover_temp_folder_of_a_killed_writer_is_never_loaded(cache_dir):
    c = cfg(synthetic_train_size=100)
    first = load_dataset(c, "train")
    (entry,) = list(cache_dir.iterdir())
    # Simulate a killed writer: its half-written temp folder sits next to the real entry's name.
    shutil.rmtree(entry)
    tmp = cache_dir / f".tmp-{entry.name}-999-deadbeef"
    tmp.mkdir()
    (tmp / "images.npy").write_bytes(b"partial")
    again = load_dataset(c, "train")
    assert torch.equal(first.images, again.images)
    assert (cache_dir / entry.name / "meta.json").is_file()


def test_cache_dir_setting_wins_over_environment(tmp_path, cache_dir):
    own = tmp_path / "own-cache"
    load_dataset(cfg(synthetic_train_size=50, cache_dir=str(own)), "train")
    assert len(entries(own)) == 1 and entries(cache_dir) == []


# ---------------------------------------------------------------------------------------------
# torchvision sets

def test_cifar10_offline_is_a_data_error_pointing_at_imagefolder(tmp_path, monkeypatch):
    import socket

    import torchvision.datasets.cifar as tv_cifar

    def offline(*a, **k):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(tv_cifar, "download_and_extract_archive", offline)
    monkeypatch.setattr(socket.socket, "connect", offline)  # belt and braces: no network at all
    root = tmp_path / "downloads"
    with pytest.raises(DataError) as err:
        load_dataset(cfg(source="cifar10", download_root=str(root)), "train")
    text = str(err.value)
    assert "could not download cifar10" in text and str(root) in text
    assert "imagefolder:" in text and "offline" in text


def test_torchvision_arrays_are_converted_limited_and_resized(monkeypatch):
    import torchvision.datasets as tvd

    class FakeCIFAR:
        def __init__(self, root, train=True, download=False):
            rng = np.random.default_rng(0 if train else 1)
            n = 300 if train else 100
            self.data = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
            self.targets = list(np.arange(n) % 10)
            self.classes = [f"c{i}" for i in range(10)]

    monkeypatch.setattr(tvd, "CIFAR10", FakeCIFAR)
    ds = load_dataset(cfg(source="cifar10", train_limit=100, image_size=16), "train", seed=0)
    assert ds.images.shape == (100, 3, 16, 16) and ds.images.dtype == torch.uint8
    assert torch.bincount(ds.labels).tolist() == [10] * 10 and ds.class_names[0] == "c0"
    full = load_dataset(cfg(source="cifar10"), "test")
    raw = FakeCIFAR(None, train=False)
    assert torch.equal(full.images, torch.from_numpy(raw.data).permute(0, 3, 1, 2))


def test_describe_source_is_one_line(tmp_path):
    for spec in ("synthetic", "cifar10", "cifar100", "stl10", f"imagefolder:{tmp_path}",
                 f"imagefolder:{tmp_path / 'missing'}", "bogus"):
        text = describe_source(spec)
        assert isinstance(text, str) and text and "\n" not in text
    assert "missing" in describe_source(f"imagefolder:{tmp_path / 'missing'}")
    assert "CIFAR-10" in describe_source(cfg(source="cifar10"))


# ---------------------------------------------------------------------------------------------
# real photos

@pytest.mark.skipif(not (CIFAR_ROOT / "train").is_dir(), reason=f"CIFAR-10 JPEG tree not found at {CIFAR_ROOT}")
def test_real_cifar10_imagefolder_subset():
    spec = f"imagefolder:{CIFAR_ROOT}"
    c = cfg(source=spec, train_limit=500, test_limit=200)
    t = time.perf_counter()
    train = load_dataset(c, "train", seed=0)
    first = time.perf_counter() - t
    test = load_dataset(c, "test", seed=0)
    t = time.perf_counter()
    load_dataset(c, "train", seed=0)
    print(f"CIFAR-10 imagefolder, 500 images: first decode {first:.2f} s, "
          f"cached reload {time.perf_counter() - t:.3f} s")
    assert len(train.class_names) == 10 and train.class_names == test.class_names
    assert train.class_names[0] == "airplane"
    assert train.images.shape == (500, 3, 32, 32) and test.images.shape == (200, 3, 32, 32)
    assert torch.bincount(train.labels).tolist() == [50] * 10
    assert torch.bincount(test.labels).tolist() == [20] * 10
    assert train.skipped == [] and train.images.float().std() > 30   # real, varied photos


# ---- the source registry -----------------------------------------------------------------------------
def test_every_source_kind_comes_from_the_one_registry(tmp_path):
    import importlib

    from backend.config import ExperimentConfig, field_meta
    from backend.data.registry import SOURCES, parse_source, source_problem
    from backend.errors import ConfigError
    assert [s.syntax for s in SOURCES] == ["synthetic", "imagefolder:<path>", "cifar10", "cifar100", "stl10"]
    for kind in SOURCES:
        module = importlib.import_module(f"backend.data.{kind.loader}")
        assert all(callable(getattr(module, f)) for f in ("plan", "describe", "num_classes"))
        spec = f"{kind.name}:{tmp_path}" if kind.takes_path else kind.name
        assert parse_source(spec).kind == kind.name and source_problem(spec) is None
        assert kind.syntax in field_meta("data.source")["help"]
    with pytest.raises(ConfigError) as info:
        ExperimentConfig.from_dict({"data": {"source": "imagefolder:"}})
    assert info.value.errors == ["data.source must be one of synthetic, imagefolder:<path>, cifar10, cifar100, "
                                 "stl10, got 'imagefolder:'"]


def test_source_modules_import_only_the_leaf_modules():
    """No cycle: the loaders never import sources.py (which imports them through the registry)."""
    import ast

    from backend.data.registry import SOURCES
    data_dir = Path(__file__).resolve().parents[2] / "backend" / "data"
    leaves = {"types", "sampling", "registry"}
    for name in {s.loader for s in SOURCES} | leaves:
        tree = ast.parse((data_dir / f"{name}.py").read_text())
        imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level == 1}
        imported |= {a.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level == 1
                     and node.module is None for a in node.names}
        assert "sources" not in imported, name
        if name in leaves:
            assert imported <= leaves, (name, imported)


def test_known_num_classes_asks_the_loader(tmp_path):
    from backend.data.sources import known_num_classes
    assert known_num_classes(cfg(source="synthetic")) == len(synthetic.CLASS_NAMES)
    assert known_num_classes(cfg(source="cifar100")) == 100
    assert known_num_classes(cfg(source=f"imagefolder:{tmp_path / 'missing'}")) is None
