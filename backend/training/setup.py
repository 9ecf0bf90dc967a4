"""Setting a run up: config checks, device, data, model, optimiser, schedule and resume, in the
order that makes a resumed run replay the same random streams."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .. import distributed as D
from ..checkpoint import clean_stale_temp_files, ensure_writable, load_checkpoint
from ..collapse import CollapseMonitor, projection_dim
from ..config import ExperimentConfig
from ..data.augment import ViewGenerator
from ..data.sources import ImageDataset, load_dataset
from ..devices import autocast_dtype, resolve_device
from ..errors import CheckpointError, ConfigError, DataError
from ..evaluate import subset_indices
from ..methods import METHODS
from ..models.split_batch_norm import has_split_bn
from ..optim import peak_lr
from ..runs import CHECKPOINT_DIR, read_run_config, write_run_config
from .feed import lazy_rows, loads_mapped, make_feed
from .optimizer import configure_optimizer
from .state import LoopState, resume_checkpoint


@dataclass
class Training:
    """Everything the loop's steps read: the run, its data, model, optimiser and schedule."""

    run_dir: Path
    cfg: ExperimentConfig
    events: object
    control: object
    dist: D.DistInfo
    device: torch.device
    train_set: ImageDataset
    test_set: ImageDataset
    train_images: torch.Tensor
    train_labels: torch.Tensor | None
    views: ViewGenerator
    aug_gen: torch.Generator
    method: torch.nn.Module          # the method itself (weights, hooks, checkpoints)
    step_fn: object                  # what a step calls: the method, DDP-wrapped and/or compiled
    optimizer: torch.optim.Optimizer
    amp_dtype: object
    channels_last: bool
    steps_per_epoch: int
    total_steps: int
    warmup_steps: int
    peak: float
    probe: tuple | None
    collapse: CollapseMonitor | None
    state: LoopState
    started: float
    feed: object = None              # feed.BatchFeed: this rank's batches (data.memory decides how)

    @property
    def world(self) -> int:
        return self.dist.world_size

    @property
    def rank(self) -> int:
        return self.dist.rank


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def load_data(cfg: ExperimentConfig, events, needs_labels: bool, *, mmap: bool = False):
    """The train and held-out splits (decoded once), with warnings for skipped files;
    ``mmap``: memory-mapped from the cache instead of read into RAM."""
    warn = lambda message: events.log(message, level="warning")  # noqa: E731
    # Skipped files: the sentence names the first few; the event lists every file and its reason.
    report = lambda message, files: events.log(message, level="warning", skipped=files)  # noqa: E731
    events.status("loading_data", f"loading {cfg.data.source} (train and held-out splits)")
    t0 = time.perf_counter()
    train_set = load_dataset(cfg.data, "train", seed=cfg.runtime.seed, on_warning=warn, on_skipped=report, mmap=mmap)
    test_set = load_dataset(cfg.data, "test", seed=cfg.runtime.seed, on_warning=warn, on_skipped=report, mmap=mmap)
    events.log(f"data ready in {time.perf_counter() - t0:.1f}s: {len(train_set)} training and "
               f"{len(test_set)} held-out images at {cfg.data.image_size}px")
    if len(train_set) < cfg.optim.batch_size:
        raise ConfigError(f"optim.batch_size must be <= the number of training images ({len(train_set)}), "
                          f"got {cfg.optim.batch_size}")
    if needs_labels and not train_set.labelled:
        raise DataError(f"method.name {cfg.method.name!r} needs labels but {cfg.data.source} has no class folders")
    if not (train_set.labelled and test_set.labelled):
        events.log("the data set is unlabelled: kNN accuracy is skipped; label-free metrics still run",
                   level="warning")
    return train_set, test_set


def probe_views(train_set: ImageDataset, views: ViewGenerator, cfg: ExperimentConfig, device):
    """A fixed probe batch (two augmented views) for the representation metrics, or None. An
    augmentation with a single view (fine-tuning) is drawn twice."""
    n = min(cfg.eval.probe_batch_size, len(train_set))
    if n < 16:
        return None  # alignment/uniformity/rank are meaningless on a handful of samples
    idx = subset_indices(len(train_set), n, cfg.runtime.seed + 3)
    gen = torch.Generator().manual_seed(cfg.runtime.seed + 2)
    images = lazy_rows(train_set, idx)[:].to(device)    # a mapped split: read, not faulted in
    v = views(images, generator=gen)
    if len(v) < 2:
        v = list(v) + list(views(images, generator=gen))
    return v[0], v[1]


def load_init_checkpoint(cfg: ExperimentConfig) -> dict | None:
    """The checkpoint named by ``model.init_checkpoint`` (safe loader), checked to hold a
    backbone of this run's architecture; None when the field is empty."""
    if not cfg.model.init_checkpoint:
        return None
    path = Path(cfg.model.init_checkpoint)
    if not path.is_file():
        raise CheckpointError(f"model.init_checkpoint {path} does not exist")
    ckpt = load_checkpoint(path)
    saved = (ckpt.get("config") or {}).get("model", {}).get("backbone")
    if saved is not None and saved != cfg.model.backbone:
        raise ConfigError(f"model.init_checkpoint {path} holds a {saved} backbone but model.backbone is "
                          f"{cfg.model.backbone!r}")
    if not any(k.startswith("backbone.") for k in ckpt.get("model", {})):
        raise CheckpointError(f"model.init_checkpoint {path} has no backbone weights")
    return ckpt


def init_backbone(method, ckpt: dict, path: str) -> None:
    """Copy the checkpoint's backbone weights into ``method.backbone`` (every weight must fit)."""
    weights = {k[len("backbone."):]: v for k, v in ckpt["model"].items() if k.startswith("backbone.")}
    try:
        method.backbone.load_state_dict(weights)
    except RuntimeError as exc:
        raise CheckpointError(f"model.init_checkpoint {path} does not fit a {method.cfg.model.backbone} "
                              f"backbone at data.image_size {method.cfg.data.image_size}: "
                              f"{str(exc).splitlines()[0]}") from None


def _check_and_record(run_dir: Path, cfg: ExperimentConfig, device, dist: D.DistInfo, events) -> None:
    world = dist.world_size
    if cfg.optim.batch_size % (world * cfg.optim.grad_accum_steps):
        raise ConfigError(f"optim.batch_size must be divisible by the number of ranks x grad_accum_steps "
                          f"({world} x {cfg.optim.grad_accum_steps}), got {cfg.optim.batch_size}")
    if cfg.runtime.num_threads:
        torch.set_num_threads(cfg.runtime.num_threads)
    if dist.is_main:
        for folder in (run_dir, run_dir / CHECKPOINT_DIR):  # read-only or full: say so before training
            ensure_writable(folder)
        write_run_config(run_dir, cfg, device=f"{device}" + (f" x {world} ranks" if world > 1 else ""))
    removed = clean_stale_temp_files(run_dir / CHECKPOINT_DIR) if dist.is_main else []
    if removed:
        events.log(f"removed {len(removed)} stale temporary checkpoint file(s) from an interrupted save")


def _restore(ckpt: dict, method, optimizer, aug_gen, state: LoopState, cfg, rank: int, on_gpu: bool, events):
    method.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    torch.set_rng_state(ckpt["rng"]["torch"])
    aug_gen.set_state(ckpt["rng"]["augment"])
    if rank:  # the checkpoint holds rank 0's stream; other ranks derive theirs from it
        aug_gen.manual_seed(cfg.runtime.seed + 1 + 1000 * rank + ckpt["step"])
    if on_gpu and "cuda" in ckpt["rng"]:
        torch.cuda.set_rng_state_all(ckpt["rng"]["cuda"])
    if hasattr(method, "load_state_extras"):
        method.load_state_extras(ckpt.get("method_extras", {}))
    state.step, state.skipped_steps = ckpt["step"], ckpt.get("skipped_steps", 0)
    state.last_knn = ckpt.get("last_knn")
    events.status("resumed", f"resumed from step {state.step}", step=state.step, epoch=ckpt["epoch"])


def prepare(run_dir: Path, resume: bool, control, events, dist: D.DistInfo,
            cfg: ExperimentConfig | None = None) -> Training:
    """Read and check the run's config (or take ``cfg``, the one rank 0 broadcast), then build
    data, model, optimiser and schedule and apply the checkpoint when resuming. Bad settings are
    refused before data, model or files. Without a shared filesystem the checkpoint is rank 0's."""
    started = time.perf_counter()
    cfg = cfg or read_run_config(run_dir)  # validated: method.name is a registered method
    ckpt = resume_checkpoint(run_dir, cfg) if resume and (dist.shared_fs or dist.is_main) else None
    if resume and not dist.shared_fs:
        ckpt = D.broadcast_object(ckpt)
    init = load_init_checkpoint(cfg) if ckpt is None else None
    device = resolve_device(cfg.runtime.device)
    if device.type == "cuda" and dist.enabled:
        device = torch.device("cuda", dist.local_rank)
        torch.cuda.set_device(device)
    _check_and_record(run_dir, cfg, device, dist, events)
    events.status("started", f"{cfg.method.name} / {cfg.model.backbone} on {device}", device=str(device))
    seed_everything(cfg.runtime.seed)
    method_cls = METHODS[cfg.method.name]

    # data: decoded once into a uint8 cache; data.memory decides whether it is held whole (on the
    # device) or streamed from the memory-mapped cache (feed.py); augmentation happens on the device
    train_set, test_set = D.local_leader_first(
        lambda: load_data(cfg, events, method_cls.uses_labels, mmap=loads_mapped(cfg)), dist.local_rank)
    if hasattr(method_cls, "training_subset"):  # fine-tuning on a label fraction
        train_set = method_cls.training_subset(cfg, train_set, events)
    on_gpu = device.type == "cuda"
    feed = make_feed(cfg, train_set, device, events)
    train_images = feed.images if feed.placement == "resident" else train_set.images
    train_labels = feed.labels if feed.placement == "resident" else train_set.labels
    views = ViewGenerator(cfg.augment, cfg.data.image_size)
    aug_gen = torch.Generator().manual_seed(cfg.runtime.seed + 1 + 1000 * dist.rank)

    # model, optimiser, schedule
    method = method_cls(cfg)
    if getattr(method, "uses_indices", False):  # memory-bank methods: one bank row per training image
        method.prepare(len(train_set))
    if init is not None:
        init_backbone(method, init, cfg.model.init_checkpoint)
    if dist.enabled and on_gpu:
        method = torch.nn.SyncBatchNorm.convert_sync_batchnorm(method)  # BN statistics of the global batch
    method = method.to(device)
    # channels_last speeds up convolutions on GPUs and CPUs alike (about 3x for ResNet-18 here),
    # except around split batch norm on the CPU, where regrouping the batch copies NHWC tensors
    # (MoCo v2 at the peer budget, tiny_cnn: 1.20 ms/img with channels_last, 1.08 without).
    channels_last = (cfg.runtime.channels_last and method.family == "cnn"
                     and not (device.type == "cpu" and has_split_bn(method)))
    if channels_last:
        method = method.to(memory_format=torch.channels_last)
    amp_dtype = autocast_dtype(cfg.runtime.amp, device)
    optimizer = configure_optimizer(method, cfg, fused=on_gpu and cfg.optim.optimizer != "lars")
    model = method
    if dist.enabled:
        from torch.nn.parallel import DistributedDataParallel as DDP
        model = DDP(method, device_ids=[device.index] if on_gpu else None, broadcast_buffers=False)
    step_fn = torch.compile(model) if cfg.runtime.compile else model  # CUDA, or the CPU when asked
    steps_per_epoch = len(train_set) // cfg.optim.batch_size
    total_steps = cfg.schedule.epochs * steps_per_epoch
    if cfg.schedule.max_steps:
        total_steps = min(total_steps, cfg.schedule.max_steps)
    warmup_steps = int(round(cfg.schedule.warmup_epochs * steps_per_epoch))

    state = LoopState()
    if ckpt is not None:
        _restore(ckpt, method, optimizer, aug_gen, state, cfg, dist.rank, on_gpu, events)
    state.epoch = state.step // max(1, steps_per_epoch)
    probe = probe_views(train_set, views, cfg, device)
    collapse = CollapseMonitor(projection_dim(method, probe[0]), len(probe[0])) if probe is not None else None
    if probe is None:
        events.log("probe batch smaller than 16 images: representation metrics are skipped", level="warning")
    return Training(run_dir, cfg, events, control, dist, device, train_set, test_set, train_images, train_labels,
                    views, aug_gen, method, step_fn, optimizer, amp_dtype, channels_last, steps_per_epoch,
                    total_steps, warmup_steps, peak_lr(cfg), probe, collapse, state, started, feed)
