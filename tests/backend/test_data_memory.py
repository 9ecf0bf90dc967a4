"""data.memory: the whole cache on the device ('ram') or streamed from the memory-mapped cache
('mmap') give the same batches, so runs and resumes are exact across modes; 'auto' picks by size."""

import numpy as np
import pytest
import torch

from backend.checkpoint import load_checkpoint
from backend.config import ExperimentConfig
from backend.errors import ConfigError
from backend.runs import checkpoint_path, summarize_run
from backend.train import run_training
from backend.training.feed import BatchFeed, choose_placement

from .test_trainer import StopAfter
from .trainer_helpers import losses_by_step, make_run

GB = 2**30


def _train(tmp_path, memory, **overrides):
    run = make_run(tmp_path / memory, data={"memory": memory}, **overrides)
    assert run_training(run, echo=False) == 0
    return run


def test_ram_and_mmap_runs_are_identical(tmp_path):
    """Same seed: identical loss at every step and identical weights after 8 steps (grad
    accumulation on, so the micro-batch split of a streamed batch is checked too)."""
    extra = {"optim": {"batch_size": 64, "grad_accum_steps": 2}}
    ram, mmap = _train(tmp_path, "ram", **extra), _train(tmp_path, "mmap", **extra)
    assert len(losses_by_step(ram)) == 8
    assert losses_by_step(ram) == losses_by_step(mmap)
    a, b = load_checkpoint(checkpoint_path(ram))["model"], load_checkpoint(checkpoint_path(mmap))["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    events = (mmap / "events.jsonl").read_text()
    assert "data.memory = 'mmap': batches are gathered from the mapped" in events


def test_a_run_stopped_in_mmap_mode_resumes_exactly_like_a_ram_run(tmp_path):
    full = _train(tmp_path, "ram")
    expected = losses_by_step(full)
    split = make_run(tmp_path / "split", data={"memory": "mmap"})
    assert run_training(split, control=StopAfter(3), echo=False) == 0    # stops inside epoch 1
    assert load_checkpoint(checkpoint_path(split))["step"] == 3
    assert run_training(split, resume=True, echo=False) == 0
    assert losses_by_step(split) == expected and summarize_run(split).state == "finished"


def test_memory_mode_is_a_checked_config_field():
    assert ExperimentConfig().data.memory == "auto"
    with pytest.raises(ConfigError, match=r"data\.memory must be one of auto, ram, mmap"):
        ExperimentConfig.from_dict({"data": {"memory": "disk"}})


@pytest.mark.parametrize("mode,cache,kw,expected", [
    ("ram", 100 * GB, {}, "resident"),
    ("mmap", 1, {}, "stream"),
    ("auto", 4 * GB, {"ram_bytes": 16 * GB}, "resident"),
    ("auto", 4 * GB, {"ram_bytes": 16 * GB, "local_ranks": 4}, "stream"),   # 4 copies > half of RAM
    ("auto", 9 * GB, {"ram_bytes": 16 * GB}, "stream"),
])
def test_auto_keeps_the_cache_whole_only_when_it_fits_in_ram(mode, cache, kw, expected):
    placement, why = choose_placement(mode, cache, torch.device("cpu"), **kw)
    assert placement == expected and f"data.memory = '{mode}'" in why


def test_auto_on_a_gpu_keeps_the_cache_there_when_it_fits():
    cuda = torch.device("cuda", 0)
    assert choose_placement("auto", 19 * GB, cuda, device_free=80 * GB)[0] == "resident"
    placement, why = choose_placement("auto", 50 * GB, cuda, device_free=80 * GB)
    assert placement == "stream" and "free memory" in why
    with pytest.raises(ValueError, match="data.memory"):
        choose_placement("disk", 1, cuda)


def test_stream_feed_yields_the_resident_bytes_in_and_out_of_order():
    images = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (40, 3, 4, 4), dtype=np.uint8))
    labels = torch.arange(40)
    resident = BatchFeed(images, labels, "cpu", "resident")
    stream = BatchFeed(images, labels, "cpu", "stream")
    order = torch.randperm(40, generator=torch.Generator().manual_seed(1))
    batches = list(order.split(8))
    stream.plan(batches)
    for idx in batches[:2] + batches[3:]:            # batch 2 skipped: the rest is gathered on the spot
        (x, y), (rx, ry) = stream.batch(idx), resident.batch(idx)
        assert torch.equal(x, rx) and torch.equal(y, ry) and torch.equal(y, idx)
    stream.close()
    assert torch.equal(stream.batch(batches[0])[0], images[batches[0]])


def test_a_stream_reads_rows_from_the_cache_file_not_the_map(tmp_path):
    """The mapped split knows its images.npy; a stream preads rows from it (never in the RSS)."""
    from backend.config import DataConfig
    from backend.data.npy_rows import NpyRows
    from backend.data.sources import load_dataset

    cfg = DataConfig(synthetic_train_size=40, cache_dir=str(tmp_path))
    mapped, in_ram = load_dataset(cfg, "train", mmap=True), load_dataset(cfg, "train")
    assert mapped.images_path.endswith("images.npy") and in_ram.images_path == ""
    feed = BatchFeed(mapped.images, mapped.labels, "cpu", "stream", images_path=mapped.images_path)
    assert isinstance(feed.images, NpyRows)
    idx = torch.tensor([39, 0, 7])
    feed.plan([idx])
    x, y = feed.batch(idx)
    assert torch.equal(x, in_ram.images[idx]) and torch.equal(y, in_ram.labels[idx])
    feed.release()
