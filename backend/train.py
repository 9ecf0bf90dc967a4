"""The training engine: one loop runs every method (DESIGN.md data flow and trainer contract).

``run_training(run_dir)`` reads the run's config.json, trains, streams events, writes checkpoints
and returns the process exit code (0 finished/stopped, 2 config error, 3 data error, 1 other).
"""

from __future__ import annotations

import math
import random
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import distributed as D
from . import faults
from . import metrics as M
from .checkpoint import clean_stale_temp_files, ensure_writable, load_checkpoint, save_checkpoint
from .collapse import CollapseMonitor, projection_dim
from .config import ExperimentConfig
from .control import TrainerControl
from .data.augment import ViewGenerator
from .data.sources import ImageDataset, load_dataset
from .devices import autocast_dtype, resolve_device
from .errors import CheckpointError, ConfigError, DataError, WorkbenchError
from .evaluate import extract_features, knn_top1, subset_indices
from .events import EventWriter, NullEventWriter
from .methods import METHODS
from .optim import build_optimizer, lr_at, peak_lr, set_lr
from .progress import ProgressPrinter
from .runs import (CHECKPOINT_DIR, EVENTS_FILE, checkpoint_path, read_run_config, record_evaluation,
                   write_metrics_h5, write_run_config)

CHECKPOINT_FORMAT = 1
# Settings that must match for a checkpoint to be resumed (the weights would not fit otherwise).
RESUME_KEYS = ("method.name", "model.backbone", "data.image_size", "data.source",
               "model.projector_hidden_dim", "model.projector_out_dim", "model.projector_layers")
MAX_BAD_STEPS = 10          # consecutive non-finite losses before the run stops
FLUSH_SECONDS = 0.5         # how often buffered per-step scalars are synced and emitted


@dataclass
class LoopState:
    """Counters the loop advances; saved in checkpoints."""

    step: int = 0
    epoch: int = 0
    bad_steps: int = 0
    skipped_steps: int = 0
    last_knn: float | None = None
    pending: list = field(default_factory=list)   # (step, epoch, {name: tensor}) awaiting a flush
    images_since_flush: int = 0
    flush_time: float = field(default_factory=time.perf_counter)


def run_training(run_dir, *, resume: bool = False, control: TrainerControl | None = None,
                 echo: bool = True, tty: bool = False) -> int:
    """Train the run in ``run_dir`` and return the exit code; never raises for user errors."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        print(f"error: run directory {run_dir} does not exist", file=sys.stderr)
        return 2
    dist_info = _join_process_group(run_dir)
    printer = ProgressPrinter() if tty and dist_info.is_main else None
    if dist_info.is_main:  # only rank 0 writes events, metrics and checkpoints
        events = EventWriter(run_dir / EVENTS_FILE, echo=echo and not tty,
                             on_event=printer.on_event if printer else None)
    else:
        events = NullEventWriter()
    control = control or TrainerControl(read_stdin=False)
    try:
        return _train(run_dir, resume, control, events, dist_info)
    except WorkbenchError as exc:
        events.error(str(exc), exc.exit_code)
        return exc.exit_code
    except Exception as exc:  # noqa: BLE001 - any other failure: one sentence, exit 1
        traceback.print_exc(file=sys.stderr)
        events.error(f"training failed: {type(exc).__name__}: {exc}", 1, unexpected=True)
        return 1
    finally:
        if printer:
            printer.close()
        events.close()
        D.cleanup()


def _join_process_group(run_dir: Path) -> D.DistInfo:
    """Under torchrun, join the group (NCCL when the run trains on CUDA, gloo otherwise)."""
    if not D.launched_by_torchrun():
        return D.DistInfo()
    try:
        device = read_run_config(run_dir).runtime.device
    except WorkbenchError:
        device = "cpu"
    wants_cuda = device != "cpu" and torch.cuda.is_available()
    return D.init_distributed("cuda" if wants_cuda else "cpu")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _config_value(cfg_dict: dict, path: str):
    node = cfg_dict
    for part in path.split("."):
        node = node.get(part, {}) if isinstance(node, dict) else None
    return node


def resume_mismatches(saved: dict, current: ExperimentConfig) -> list[str]:
    """Settings that differ between a checkpoint's config and the run's config."""
    cur = current.to_dict()
    out = []
    for key in RESUME_KEYS:
        a, b = _config_value(saved, key), _config_value(cur, key)
        if a != b:
            out.append(f"{key} (checkpoint {a!r}, config {b!r})")
    return out


def _resume_checkpoint(run_dir: Path, cfg: ExperimentConfig) -> dict:
    """The run's last checkpoint, checked against its config before anything is loaded or written."""
    ckpt = load_checkpoint(checkpoint_path(run_dir))
    mismatches = resume_mismatches(ckpt.get("config", {}), cfg)
    if mismatches:
        raise ConfigError("cannot resume: the checkpoint was trained with different settings: "
                          + "; ".join(mismatches) + "; start a new run to train with the new settings")
    return ckpt


def _load_data(cfg: ExperimentConfig, events: EventWriter, needs_labels: bool):
    warn = lambda message: events.log(message, level="warning")  # noqa: E731
    # Skipped files: the sentence names the first few; the event lists every file and its reason.
    report = lambda message, files: events.log(message, level="warning", skipped=files)  # noqa: E731
    events.status("loading_data", f"loading {cfg.data.source} (train and held-out splits)")
    t0 = time.perf_counter()
    train_set = load_dataset(cfg.data, "train", seed=cfg.runtime.seed, on_warning=warn, on_skipped=report)
    test_set = load_dataset(cfg.data, "test", seed=cfg.runtime.seed, on_warning=warn, on_skipped=report)
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


def _probe_views(train_set: ImageDataset, views: ViewGenerator, cfg: ExperimentConfig, device):
    """A fixed probe batch (two augmented views) for the representation metrics, or None."""
    n = min(cfg.eval.probe_batch_size, len(train_set))
    if n < 16:
        return None  # alignment/uniformity/rank are meaningless on a handful of samples
    idx = subset_indices(len(train_set), n, cfg.runtime.seed + 3)
    gen = torch.Generator().manual_seed(cfg.runtime.seed + 2)
    v = views(train_set.images[idx].to(device), generator=gen)
    return v[0], v[1]


@torch.no_grad()
def probe_metrics(method, probe, amp_dtype) -> dict[str, torch.Tensor]:
    """Alignment, uniformity, embedding_std and effective rank of projector and backbone outputs."""
    was_training = method.training
    method.eval()
    try:
        with torch.autocast(device_type=probe[0].device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            (f1, p1), (f2, p2) = method.embed(probe[0]), method.embed(probe[1])
    finally:
        method.train(was_training)
    out = {}
    for prefix, a, b in (("", p1, p2), ("backbone_", f1, f2)):
        a, b = a.float(), b.float()
        out[prefix + "alignment"] = M.alignment(a, b)
        out[prefix + "uniformity"] = M.uniformity(a)
        out[prefix + "embedding_std"] = M.embedding_std(a)
        out[prefix + "effective_rank"] = M.effective_rank(a)
    return out


def _note_collapse(monitor: CollapseMonitor, step: int, values: dict, events: EventWriter) -> None:
    """A warning event at the onset of collapse, a note when it clears (one host sync per probe)."""
    change = monitor.update(step, float(values["embedding_std"]), float(values["effective_rank"]))
    if change is not None:
        kind, message = change
        events.log(message, level="warning" if kind == "collapse" else "info", warning=kind, step=step,
                   embedding_std=float(values["embedding_std"]),
                   effective_rank=float(values["effective_rank"]))


def _repair_buffers(method: torch.nn.Module) -> list[str]:
    """After a skipped step: the forward pass may have written non-finite values into buffers
    (batch-norm running statistics, DINO's centre, queues). Batch-norm statistics are reset (they
    are re-estimated within a few steps), other non-finite entries zeroed; returns their names.
    Runs only on bad steps, so healthy steps pay nothing."""
    repaired = []
    for name, module in method.named_modules():
        if isinstance(module, torch.nn.modules.batchnorm._NormBase) and module.track_running_stats and not (
                torch.isfinite(module.running_mean).all() and torch.isfinite(module.running_var).all()):
            module.reset_running_stats()
            repaired.append(f"{name}.running_mean/var")
    for name, buf in method.named_buffers():
        if buf.is_floating_point() and not torch.isfinite(buf).all():
            torch.nan_to_num_(buf, nan=0.0, posinf=0.0, neginf=0.0)
            repaired.append(name)
    return repaired


def _nan_stop_message(state: LoopState, lr: float, amp_dtype, cfg: ExperimentConfig) -> str:
    """Why the run stops after too many non-finite losses: step, lr, AMP and grad scale, and fixes."""
    amp = "bf16" if amp_dtype is not None else "off"
    fixes = ["lower optim.lr"] + (["set runtime.amp = 'off'"] if amp_dtype is not None else []) + (
        ["set optim.grad_clip (e.g. 1.0)"] if cfg.optim.grad_clip <= 0 else [])
    return (f"loss was not finite for {state.bad_steps} steps in a row (last at step {state.step + 1}, "
            f"lr {lr:.4g}, AMP {amp}, grad scale 1.0 - no loss scaling is used with bf16 or full "
            f"precision; {state.skipped_steps} steps skipped in all); {', '.join(fixes)}")


def _flush(state: LoopState, events: EventWriter, force: bool = False) -> None:
    """Emit buffered per-step scalars (one host sync per flush, not per step)."""
    now = time.perf_counter()
    if not state.pending or (not force and now - state.flush_time < FLUSH_SECONDS):
        return
    names = [(step, epoch, name) for step, epoch, values in state.pending for name in values]
    tensors = [v.detach().float().reshape(()) for _, _, values in state.pending for v in values.values()]
    numbers = torch.stack(tensors).cpu().tolist() if tensors else []
    for (step, epoch, name), value in zip(names, numbers):
        events.metric(name, value, step, epoch)
    last_step, last_epoch = state.pending[-1][0], state.pending[-1][1]
    elapsed = now - state.flush_time
    if elapsed > 0 and state.images_since_flush:
        events.metric("throughput", state.images_since_flush / elapsed, last_step, last_epoch)
    state.pending.clear()
    state.images_since_flush = 0
    state.flush_time = now


def _agree_on_requests(control: TrainerControl) -> tuple[bool, bool]:
    """(stop, checkpoint) requests; under torchrun every rank acts if any rank was asked."""
    flags = torch.tensor([control.stop_requested.is_set(), control.checkpoint_requested.is_set()],
                         dtype=torch.float32)
    if D.is_enabled():
        flags = D.all_reduce_sum(flags.to(_sync_device()))
    stop, ckpt = bool(flags[0] > 0), bool(flags[1] > 0)
    if stop and not control.stop_requested.is_set():
        control.request("stop", reason="another rank was asked to stop")
    control.checkpoint_requested.clear()
    return stop, ckpt


def _sync_device() -> torch.device:
    import torch.distributed as dist
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def _checkpoint_state(method, optimizer, aug_gen, state: LoopState, cfg: ExperimentConfig) -> dict:
    extras = method.state_extras() if hasattr(method, "state_extras") else {}
    rng = {"torch": torch.get_rng_state(), "augment": aug_gen.get_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    return {"format": CHECKPOINT_FORMAT, "model": method.state_dict(), "optimizer": optimizer.state_dict(),
            "scaler": None, "rng": rng, "method_extras": extras, "step": state.step, "epoch": state.epoch,
            "skipped_steps": state.skipped_steps, "last_knn": state.last_knn, "config": cfg.to_dict()}


def _save(run_dir: Path, payload: dict, events: EventWriter, reason: str, keep_epoch: bool) -> None:
    """Commit a checkpoint atomically; refuse to write non-finite weights; sync events and metrics."""
    for name, tensor in payload["model"].items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise WorkbenchError(f"refusing to checkpoint at step {payload['step']}: weight {name} is not finite")
    try:
        save_checkpoint(payload, checkpoint_path(run_dir))
        if keep_epoch:
            save_checkpoint(payload, checkpoint_path(run_dir, f"epoch-{payload['epoch']:04d}.pt"))
        events.sync()
        write_metrics_h5(run_dir)
    except OSError as exc:
        raise WorkbenchError(f"could not save a checkpoint in {run_dir / CHECKPOINT_DIR}: "
                             f"{exc.strerror or exc}; the previous checkpoint is kept") from None
    events.status("checkpoint", f"checkpoint saved ({reason})", step=payload["step"], epoch=payload["epoch"])


def _train(run_dir: Path, resume: bool, control: TrainerControl, events: EventWriter,
           dist_info: D.DistInfo) -> int:
    # ---- configuration and device ------------------------------------------------------------
    cfg = read_run_config(run_dir)
    if cfg.method.name not in METHODS:
        raise ConfigError(f"method.name must be one of {', '.join(sorted(METHODS))}, got {cfg.method.name!r}")
    ckpt = _resume_checkpoint(run_dir, cfg) if resume else None  # refused before data, model or files
    device = resolve_device(cfg.runtime.device)
    world, rank = dist_info.world_size, dist_info.rank
    if device.type == "cuda" and dist_info.enabled:
        device = torch.device("cuda", dist_info.local_rank)
        torch.cuda.set_device(device)
    if cfg.optim.batch_size % (world * cfg.optim.grad_accum_steps):
        raise ConfigError(f"optim.batch_size must be divisible by the number of ranks x grad_accum_steps "
                          f"({world} x {cfg.optim.grad_accum_steps}), got {cfg.optim.batch_size}")
    if cfg.runtime.num_threads:
        torch.set_num_threads(cfg.runtime.num_threads)
    if dist_info.is_main:
        for folder in (run_dir, run_dir / CHECKPOINT_DIR):  # read-only or full: say so before training
            ensure_writable(folder)
        write_run_config(run_dir, cfg, device=f"{device}" + (f" x {world} ranks" if world > 1 else ""))
    removed = clean_stale_temp_files(run_dir / CHECKPOINT_DIR) if dist_info.is_main else []
    if removed:
        events.log(f"removed {len(removed)} stale temporary checkpoint file(s) from an interrupted save")
    events.status("started", f"{cfg.method.name} / {cfg.model.backbone} on {device}", device=str(device))
    seed_everything(cfg.runtime.seed)
    method_cls = METHODS[cfg.method.name]

    # ---- data: decoded once into a uint8 cache; augmentation happens on the device ------------
    train_set, test_set = _load_data(cfg, events, method_cls.uses_labels)
    on_gpu = device.type == "cuda"
    train_images = train_set.images.to(device) if on_gpu else train_set.images
    train_labels = train_set.labels.to(device) if (train_set.labels is not None and on_gpu) else train_set.labels
    views = ViewGenerator(cfg.augment, cfg.data.image_size)
    aug_gen = torch.Generator().manual_seed(cfg.runtime.seed + 1 + 1000 * rank)

    # ---- model, optimiser, schedule ----------------------------------------------------------
    method = method_cls(cfg)
    if getattr(method, "uses_indices", False):  # memory banks: one row per training image
        method.prepare(len(train_set))
    if dist_info.enabled and device.type == "cuda":
        method = torch.nn.SyncBatchNorm.convert_sync_batchnorm(method)  # BN statistics of the global batch
    method = method.to(device)
    if method.family not in method_cls.families:
        raise ConfigError(f"model.backbone {cfg.model.backbone!r} is not supported by {cfg.method.name} "
                          f"(supports {', '.join(method_cls.families)} backbones)")
    # channels_last speeds up convolutions on GPUs and CPUs alike (about 3x for ResNet-18 here).
    channels_last = cfg.runtime.channels_last and method.family == "cnn"
    if channels_last:
        method = method.to(memory_format=torch.channels_last)
    amp_dtype = autocast_dtype(cfg.runtime.amp, device)
    optimizer = build_optimizer(method, cfg, fused=on_gpu and cfg.optim.optimizer != "lars")
    model = method
    if dist_info.enabled:
        from torch.nn.parallel import DistributedDataParallel as DDP
        model = DDP(method, device_ids=[device.index] if on_gpu else None, broadcast_buffers=False)
    step_fn = torch.compile(model) if (cfg.runtime.compile and on_gpu) else model
    batch, accum = cfg.optim.batch_size, cfg.optim.grad_accum_steps
    steps_per_epoch = len(train_set) // batch
    total_steps = cfg.schedule.epochs * steps_per_epoch
    if cfg.schedule.max_steps:
        total_steps = min(total_steps, cfg.schedule.max_steps)
    warmup_steps = int(round(cfg.schedule.warmup_epochs * steps_per_epoch))
    peak = peak_lr(cfg)

    # ---- resume ------------------------------------------------------------------------------
    state = LoopState()
    if ckpt is not None:
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
    state.epoch = state.step // max(1, steps_per_epoch)
    probe = _probe_views(train_set, views, cfg, device)
    collapse = CollapseMonitor(projection_dim(method, probe[0]), len(probe[0])) if probe is not None else None
    if probe is None:
        events.log("probe batch smaller than 16 images: representation metrics are skipped", level="warning")

    def evaluate_knn() -> float | None:
        """kNN top-1 of backbone features: bank = (subset of) train split, queries = test split."""
        if not (train_set.labelled and test_set.labelled) or not dist_info.is_main:
            return None
        bank_idx = subset_indices(len(train_set), cfg.eval.knn_train_limit, cfg.runtime.seed + 4)
        kw = dict(device=device, autocast_dtype=amp_dtype, channels_last=channels_last)
        bank = extract_features(method.backbone, train_set.images[bank_idx], views.eval_views, **kw)
        queries = extract_features(method.backbone, test_set.images, views.eval_views, **kw)
        return knn_top1(bank, train_set.labels[bank_idx], queries, test_set.labels,
                        num_classes=max(len(train_set.class_names), 1), k=cfg.eval.knn_k,
                        temperature=cfg.eval.knn_temperature)

    def checkpoint(reason: str) -> None:
        _flush(state, events, force=True)
        if dist_info.is_main:
            _save(run_dir, _checkpoint_state(method, optimizer, aug_gen, state, cfg), events, reason,
                  cfg.runtime.keep_epoch_checkpoints and reason.startswith("epoch"))
        D.barrier()

    def stopped() -> int:
        checkpoint(control.stop_reason or "stop requested")
        events.status("stopped", f"stopped at step {state.step} ({control.stop_reason}); resume to continue",
                      step=state.step, epoch=state.epoch)
        return 0

    events.status("running", f"{total_steps} steps ({steps_per_epoch} per epoch, batch {batch})",
                  total_steps=total_steps, steps_per_epoch=steps_per_epoch, epochs=cfg.schedule.epochs)
    method.train()

    # ---- the loop ----------------------------------------------------------------------------
    while state.step < total_steps:
        epoch = state.epoch
        # The epoch's order depends only on (seed, epoch): a resumed run replays it exactly.
        order = torch.randperm(len(train_set), generator=torch.Generator().manual_seed(cfg.runtime.seed * 1000 + epoch))
        epoch_start = time.perf_counter()
        for batch_index in range(state.step - epoch * steps_per_epoch, steps_per_epoch):
            if state.step >= total_steps:
                break
            control.wait_while_paused(lambda: events.status("paused", f"paused at step {state.step}"),
                                      lambda: events.status("running", "resumed after pause"))
            stop_now, checkpoint_now = _agree_on_requests(control)
            if stop_now:
                return stopped()
            if checkpoint_now:
                checkpoint("requested")

            idx = order[batch_index * batch:(batch_index + 1) * batch]
            share = batch // world  # this rank's slice of the global batch
            idx = idx[rank * share:(rank + 1) * share]
            lr = lr_at(state.step, total_steps, warmup_steps, peak, cfg.schedule.min_lr_ratio)
            set_lr(optimizer, lr)
            progress = state.step / max(1, total_steps)
            # Micro-batches accumulate gradients; contrastive negatives stay within a micro-batch.
            loss_sum, out = 0.0, None
            for micro in idx.chunk(accum):
                images = train_images[micro.to(train_images.device)].to(device, non_blocking=True)
                labels = train_labels[micro.to(train_labels.device)].to(device) if train_labels is not None else None
                batch_views = views(images, generator=aug_gen)
                if getattr(method, "uses_indices", False):  # the dataset indices of this micro-batch
                    method.set_batch_indices(micro)
                if channels_last:
                    batch_views = [v.contiguous(memory_format=torch.channels_last) for v in batch_views]
                with torch.autocast(device_type=device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                    out = step_fn(batch_views, labels, progress)
                (out.loss / accum).backward()
                loss_sum = loss_sum + out.loss.detach() / accum

            loss_sum = faults.inject(state.step + 1, loss_sum)  # test-only, inert without SSLWB_FAULT
            # A non-finite loss skips the update (weights stay finite); many in a row stop the run.
            finite_check = D.all_reduce_sum(torch.as_tensor(loss_sum).detach().float().reshape(1).to(
                _sync_device())) if dist_info.enabled else loss_sum
            if not math.isfinite(float(finite_check)):
                optimizer.zero_grad(set_to_none=True)
                state.bad_steps += 1
                state.skipped_steps += 1
                repaired = _repair_buffers(method)
                events.log(f"non-finite loss at step {state.step + 1}: update skipped "
                           f"({state.skipped_steps} skipped so far)" +
                           (f"; reset {len(repaired)} buffer(s) the bad batch had made non-finite "
                            f"({', '.join(repaired[:3])})" if repaired else ""), level="warning",
                           step=state.step + 1, skipped_steps=state.skipped_steps)
                if state.bad_steps >= MAX_BAD_STEPS:
                    raise WorkbenchError(_nan_stop_message(state, lr, amp_dtype, cfg))
                state.step += 1
                continue
            state.bad_steps = 0
            if cfg.optim.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(method.parameters(), cfg.optim.grad_clip)
            method.before_optimizer_step(progress)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            extras = method.after_optimizer_step(progress)
            state.step += 1

            scalars = {"loss": loss_sum, "lr": torch.tensor(lr)}
            for name, value in {**out.extras, **extras}.items():
                scalars[f"{cfg.method.name}/{name}"] = torch.as_tensor(value)
            if probe is not None and (state.step % cfg.eval.metrics_every_steps == 0 or state.step == 1):
                probe_values = probe_metrics(method, probe, amp_dtype)
                scalars.update(probe_values)
                _note_collapse(collapse, state.step, probe_values, events)
            state.pending.append((state.step, epoch, scalars))
            state.images_since_flush += len(idx) * world
            _flush(state, events)

        # ---- end of epoch: kNN, checkpoint ---------------------------------------------------
        _flush(state, events, force=True)
        finished_epoch = state.step // steps_per_epoch
        if finished_epoch > epoch or state.step >= total_steps:
            events.metric("epoch_time", time.perf_counter() - epoch_start, state.step, epoch)
            last = state.step >= total_steps
            every = cfg.eval.knn_every_epochs
            if last or (every and (epoch + 1) % every == 0):
                t0 = time.perf_counter()
                knn = evaluate_knn()
                D.barrier()
                if knn is not None:
                    state.last_knn = knn
                    events.metric("knn_top1", knn, state.step, epoch, k=cfg.eval.knn_k,
                                  temperature=cfg.eval.knn_temperature, features="backbone",
                                  seconds=round(time.perf_counter() - t0, 3))
            state.epoch = finished_epoch
            if last or (epoch + 1) % cfg.runtime.checkpoint_every_epochs == 0:
                checkpoint(f"epoch {epoch + 1}")

    if state.last_knn is not None:
        record_evaluation(run_dir, {"kind": "knn", "source": "online", "top1": state.last_knn,
                                    "k": cfg.eval.knn_k, "temperature": cfg.eval.knn_temperature,
                                    "features": "backbone", "normalize": "l2", "split": "test",
                                    "bank": "train", "bank_limit": cfg.eval.knn_train_limit,
                                    "step": state.step, "checkpoint": "last.pt"})
    events.status("finished", f"finished {state.step} steps" +
                  (f"; kNN top-1 {state.last_knn:.3f}" if state.last_knn is not None else ""),
                  step=state.step, epoch=state.epoch)
    return 0
