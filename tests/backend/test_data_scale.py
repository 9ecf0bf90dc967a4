"""Data larger than RAM: memory-mapped cache reads, the batch prefetcher, parallel decoding."""

import threading
import time

import numpy as np
import pytest
import torch
from PIL import Image

from backend.data import cache
from backend.data.imagefolder import decode_files
from backend.errors import Cancelled
from backend.data.parallel_decode import decode_into, open_image_memmap
from backend.data.prefetch import BatchPrefetcher, batch_indices, gather_batch

KEY = {"source": "test", "n": 20}


def _entry(tmp_path, n=20, size=8, labelled=True):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, 3, size, size), dtype=np.uint8)
    labels = rng.integers(0, 3, n).astype(np.int64) if labelled else None
    name = cache.entry_name("test", "train", size, KEY)
    cache.save_entry(tmp_path, name, KEY, images, labels, {"class_names": ["a", "b", "c"], "skipped": []})
    return name, images, labels


# ---- cache ----------------------------------------------------------------------------------

def test_mmap_read_equals_in_ram_read(tmp_path):
    name, images, labels = _entry(tmp_path)
    ram = cache.load_entry(tmp_path, name, KEY, 8)
    mapped = cache.load_entry(tmp_path, name, KEY, 8, mmap=True)
    assert not isinstance(ram[0], np.memmap)             # the default is unchanged
    assert isinstance(mapped[0], np.memmap) and not mapped[0].flags.writeable
    np.testing.assert_array_equal(ram[0], mapped[0])
    np.testing.assert_array_equal(mapped[0], images)
    np.testing.assert_array_equal(ram[1], mapped[1])
    assert ram[2] == mapped[2]


def test_mmap_read_of_a_truncated_file_is_a_miss(tmp_path):
    name, _, _ = _entry(tmp_path)
    path = tmp_path / name / "images.npy"
    path.write_bytes(path.read_bytes()[:-100])
    assert cache.load_entry(tmp_path, name, KEY, 8, mmap=True) is None
    assert not (tmp_path / name).exists()


# ---- prefetcher -----------------------------------------------------------------------------

def _mapped(tmp_path, n=50):
    name, images, labels = _entry(tmp_path, n=n)
    return cache.load_entry(tmp_path, name, KEY, 8, mmap=True)[:2] + (images, labels)


def test_prefetcher_yields_exactly_the_batches_in_order(tmp_path):
    mm, mm_labels, images, labels = _mapped(tmp_path)
    batches = batch_indices(50, 8, seed=3, drop_last=False)
    assert sorted(np.concatenate(batches).tolist()) == list(range(50))
    with BatchPrefetcher(mm, batches, mm_labels, depth=2, pin_memory=False) as pf:
        got = list(pf)
    assert len(got) == len(batches)
    for (x, y), idx in zip(got, batches):
        assert x.dtype == torch.uint8 and y.dtype == torch.int64
        np.testing.assert_array_equal(x.numpy(), images[idx])
        np.testing.assert_array_equal(y.numpy(), labels[idx])
    again = list(BatchPrefetcher(mm, batches, mm_labels, pin_memory=False))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(got, again))     # deterministic
    assert not pf.alive


def test_prefetcher_moves_to_a_device_and_handles_no_labels():
    images = np.arange(10 * 3 * 2 * 2, dtype=np.uint8).reshape(10, 3, 2, 2)
    pf = BatchPrefetcher(torch.from_numpy(images), [[9, 0, 5]], device="cpu", pin_memory=False)
    x, y = next(pf)
    assert y is None and x.device.type == "cpu"
    np.testing.assert_array_equal(x.numpy(), images[[9, 0, 5]])
    with pytest.raises(StopIteration):
        next(pf)


def test_gather_batch_keeps_the_index_order_and_checks_range():
    images = np.arange(6, dtype=np.uint8).reshape(6, 1)
    x, _ = gather_batch(images, [4, 1, 4, 0])
    assert x.flatten().tolist() == [4, 1, 4, 0]
    with pytest.raises(IndexError, match="out of range"):
        gather_batch(images, [6])


def test_prefetcher_propagates_an_exception_at_its_batch():
    images = np.zeros((10, 3, 2, 2), dtype=np.uint8)

    def batches():
        yield [0, 1]
        yield [2, 3]
        raise RuntimeError("index source broke")

    pf = BatchPrefetcher(images, batches(), pin_memory=False)
    assert next(pf)[0].shape == (2, 3, 2, 2)
    assert next(pf)[0].shape == (2, 3, 2, 2)
    with pytest.raises(RuntimeError, match="index source broke"):
        next(pf)
    assert not pf.alive
    with pytest.raises(IndexError):
        list(BatchPrefetcher(images, [[0], [99]], pin_memory=False))


def test_prefetcher_stops_cleanly_and_stays_bounded():
    images = np.zeros((4, 3, 2, 2), dtype=np.uint8)
    taken = []

    def endless():
        i = 0
        while True:
            taken.append(i)
            yield [i % 4]
            i += 1

    pf = BatchPrefetcher(images, endless(), depth=2, pin_memory=False)
    next(pf)
    time.sleep(0.3)
    assert len(taken) <= 1 + 2 + 2      # consumed + queued + one being gathered (+ one waiting)
    pf.close()
    assert not pf.alive
    with pytest.raises(StopIteration):
        next(pf)
    n = len(taken)
    time.sleep(0.2)
    assert len(taken) == n              # nothing is read after close
    with pytest.raises(ValueError, match="depth"):
        BatchPrefetcher(images, [], depth=0)


def test_prefetcher_close_from_another_thread_unblocks_the_consumer():
    images = np.zeros((4, 1), dtype=np.uint8)
    gate = threading.Event()

    def slow():
        gate.wait(5)
        yield [0]

    pf = BatchPrefetcher(images, slow(), pin_memory=False)
    threading.Timer(0.2, lambda: (gate.set(), pf.close())).start()
    got = list(pf)                      # must end, not hang, once closed
    assert len(got) <= 1 and pf._done
    pf._thread.join(6)
    assert not pf.alive


# ---- parallel decode ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def jpeg_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("jpegs")
    rng = np.random.default_rng(1)
    paths = []
    for i, (w, h) in enumerate([(37, 53), (64, 17), (101, 99), (20, 20), (15, 70), (333, 41)] * 5):
        array = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        path = folder / f"img{i:02d}.jpg"
        Image.fromarray(array).save(path, quality=90)
        paths.append(str(path))
    bad = folder / "broken.jpg"
    bad.write_bytes(b"not a jpeg")
    paths.insert(7, str(bad))
    return paths


def test_parallel_decode_equals_serial_decode(jpeg_folder, tmp_path):
    size = 24
    reference, ref_errors = decode_files(jpeg_folder, size, workers=1)
    serial = np.zeros_like(reference)
    serial_errors = decode_into(jpeg_folder, serial, size, workers=1)
    mapped = open_image_memmap(tmp_path / "images.npy", len(jpeg_folder), size)
    seen = []
    errors = decode_into(jpeg_folder, mapped, size, workers=2, chunk=4,
                         on_progress=lambda done, total: seen.append((done, total)))
    np.testing.assert_array_equal(serial, reference)
    np.testing.assert_array_equal(np.load(tmp_path / "images.npy", mmap_mode="r"), reference)
    assert errors == serial_errors == ref_errors
    assert errors[7] == "not a readable image" and sum(e is not None for e in errors) == 1
    assert seen[-1] == (len(jpeg_folder), len(jpeg_folder))
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    in_ram = np.zeros_like(reference)                     # not file-backed: pixels come back by pipe
    decode_into(jpeg_folder, in_ram, size, workers=2, chunk=5)
    np.testing.assert_array_equal(in_ram, reference)


def test_parallel_decode_cancel_stops_early(jpeg_folder):
    cancel = threading.Event()
    seen = []

    def progress(done, total):
        seen.append(done)
        cancel.set()

    out = np.zeros((len(jpeg_folder), 3, 16, 16), dtype=np.uint8)
    with pytest.raises(Cancelled):
        decode_into(jpeg_folder, out, 16, workers=1, chunk=2, on_progress=progress, cancel=cancel)
    assert seen == [2]
    cancel.clear()
    seen.clear()
    with pytest.raises(Cancelled):
        decode_into(jpeg_folder * 20, np.zeros((len(jpeg_folder) * 20, 3, 16, 16), np.uint8), 16,
                    workers=2, chunk=2, on_progress=progress, cancel=cancel)
    assert seen and seen[-1] < len(jpeg_folder) * 20


def test_decode_into_checks_the_output_shape(jpeg_folder):
    with pytest.raises(ValueError, match="out must be uint8"):
        decode_into(jpeg_folder, np.zeros((1, 3, 8, 8), np.uint8), 8)


def test_npy_rows_reads_what_np_load_reads(tmp_path):
    from backend.data.npy_rows import NpyRows

    name, images, labels = _entry(tmp_path, n=30)
    rows = NpyRows(tmp_path / name / "images.npy")
    assert rows.shape == images.shape and len(rows) == 30
    np.testing.assert_array_equal(rows[[5, 0, 29, 5, -1]], images[[5, 0, 29, 5, -1]])
    np.testing.assert_array_equal(rows[3], images[3])
    batches = batch_indices(30, 7, seed=2, drop_last=False)
    for (x, _), idx in zip(BatchPrefetcher(rows, batches, pin_memory=False), batches):
        np.testing.assert_array_equal(x.numpy(), images[idx])
    with pytest.raises(IndexError):
        rows[[30]]
    rows.close()
    path = tmp_path / name / "images.npy"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(ValueError, match="truncated"):
        NpyRows(path)


# ---- the cache build decodes in parallel, straight into the memory-mapped entry ----------------

def _imagenet_layout(root, per_class=36):
    """train/ and val/ with class folders of JPEGs of assorted sizes, and one broken train file."""
    rng = np.random.default_rng(2)
    sizes = [(37, 53), (64, 17), (101, 99), (20, 20), (15, 70), (333, 41)]
    for split, count in (("train", per_class), ("val", 2)):
        for cls in ("n01440764", "n01443537"):
            folder = root / split / cls
            folder.mkdir(parents=True)
            for i in range(count):
                w, h = sizes[i % len(sizes)]
                Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(folder / f"{i:03d}.JPEG")
    (root / "train" / "n01443537" / "zz_broken.JPEG").write_bytes(b"not a jpeg")


def _mapped_file(address: int) -> str:
    """The file mapped at ``address`` in this process ('' when none), from /proc/self/maps."""
    for line in open("/proc/self/maps"):
        parts = line.split()
        lo, hi = (int(x, 16) for x in parts[0].split("-"))
        if lo <= address < hi:
            return parts[5] if len(parts) > 5 else ""
    return ""


@pytest.mark.parametrize("pool", ["processes", "threads"])
def test_cache_build_decodes_an_imagenet_folder_in_parallel_into_the_mapped_entry(tmp_path, monkeypatch, pool):
    from backend.config import DataConfig
    from backend.data import imagefolder, parallel_decode
    from backend.data.imagefolder import decode_image
    from backend.data.sources import load_dataset

    calls = []
    real = parallel_decode.decode_into
    monkeypatch.setattr(parallel_decode, "decode_into", lambda *a, **k: calls.append(k) or real(*a, **k))
    monkeypatch.setattr(imagefolder, "PROCESS_MIN_FILES", 50 if pool == "processes" else 10**9)
    _imagenet_layout(tmp_path / "imnet")
    cfg = DataConfig(source=f"imagefolder:{tmp_path / 'imnet'}", image_size=16, cache_dir=str(tmp_path / "cache"))
    seen = []
    ds = load_dataset(cfg, "train", on_progress=lambda f, text: seen.append(f), mmap=True)
    assert len(ds) == 72 and ds.class_names == ["n01440764", "n01443537"]
    assert ds.skipped == [("train/n01443537/zz_broken.JPEG", "not a readable image")]
    assert _mapped_file(ds.images.data_ptr()).endswith("images.npy")  # the tensor is the mapped entry
    files = sorted((tmp_path / "imnet" / "train").glob("*/[0-9]*.JPEG"))
    expected = np.stack([decode_image(p, 16).transpose(2, 0, 1) for p in files])
    np.testing.assert_array_equal(ds.images.numpy(), expected)      # shorter side to 16, centre crop
    assert ds.labels.tolist() == [0] * 36 + [1] * 36
    assert seen[-1] == 1.0 and seen == sorted(seen)
    assert len(calls) == (1 if pool == "processes" else 0)           # the train split only (72 files)
    (entry,) = (tmp_path / "cache").iterdir()
    assert sorted(p.name for p in entry.iterdir()) == ["images.npy", "labels.npy", "meta.json"]
    again = load_dataset(cfg, "train")                                # read from the cache, in RAM
    assert torch.equal(again.images, ds.images) and len(load_dataset(cfg, "test")) == 4


def test_cancelled_cache_build_leaves_no_entry(tmp_path):
    from backend.config import DataConfig
    from backend.data.sources import load_dataset

    _imagenet_layout(tmp_path / "imnet", per_class=40)
    cfg = DataConfig(source=f"imagefolder:{tmp_path / 'imnet'}", image_size=16, cache_dir=str(tmp_path / "cache"))
    with pytest.raises(Cancelled):
        load_dataset(cfg, "train", cancelled=lambda: True)
    assert list((tmp_path / "cache").iterdir()) == []
