"""One optimisation step: micro-batches accumulate gradients, a non-finite loss skips the update
(and repairs buffers the bad batch poisoned), a finite one updates weights and EMA targets and
buffers the step's scalars for the next flush."""

from __future__ import annotations

import math

import torch

from .. import distributed as D
from .. import faults
from ..errors import WorkbenchError
from ..optim import clip_grad_per_param_, lr_at, set_weight_decay, wd_at
from ..schedules import epoch_at
from .optimizer import set_scheduled_lr
from .scalars import emit_spectra, note_collapse, probe_metrics, spectrum_due
from .setup import Training
from .state import LoopState

MAX_BAD_STEPS = 10          # consecutive non-finite losses before the run stops


def sync_device() -> torch.device:
    """The device collectives run on: the current CUDA device under NCCL, else the CPU."""
    import torch.distributed as dist
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def rank_indices(t: Training, order: torch.Tensor, batch_index: int) -> torch.Tensor:
    """This rank's slice of the global batch ``batch_index`` of the epoch's ``order``."""
    batch = t.cfg.optim.batch_size
    idx = order[batch_index * batch:(batch_index + 1) * batch]
    share = batch // t.world
    return idx[t.rank * share:(t.rank + 1) * share]


def forward_backward(t: Training, idx: torch.Tensor, progress: float):
    """(mean loss as a detached tensor, last StepOutput): gradients of every micro-batch summed.
    Contrastive negatives stay within a micro-batch."""
    accum = t.cfg.optim.grad_accum_steps
    loss_sum, out = 0.0, None
    all_images, all_labels = t.feed.batch(idx)   # the same rows whichever data.memory (feed.py)
    for i, micro in enumerate(idx.chunk(accum)):
        images = all_images.chunk(accum)[i]
        labels = all_labels.chunk(accum)[i] if all_labels is not None else None
        batch_views = t.views(images, generator=t.aug_gen)
        if getattr(t.method, "uses_indices", False):  # memory banks update the batch's own rows
            t.method.set_batch_indices(micro)
        if t.channels_last:
            batch_views = [v.contiguous(memory_format=torch.channels_last) for v in batch_views]
        with torch.autocast(device_type=t.device.type, dtype=t.amp_dtype, enabled=t.amp_dtype is not None):
            out = t.step_fn(batch_views, labels, progress)
        (out.loss / accum).backward()
        loss_sum = loss_sum + out.loss.detach() / accum
    return loss_sum, out


def loss_is_finite(t: Training, loss) -> bool:
    """Whether the step's loss is finite on every rank (one host sync per step)."""
    check = D.all_reduce_sum(torch.as_tensor(loss).detach().float().reshape(1).to(sync_device())) \
        if t.dist.enabled else loss
    return math.isfinite(float(check))


def repair_buffers(method: torch.nn.Module) -> list[str]:
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


def nan_stop_message(state: LoopState, lr: float, amp_dtype, cfg) -> str:
    """Why the run stops after too many non-finite losses: step, lr, AMP and grad scale, and fixes."""
    amp = "bf16" if amp_dtype is not None else "off"
    fixes = ["lower optim.lr"] + (["set runtime.amp = 'off'"] if amp_dtype is not None else []) + (
        ["set optim.grad_clip (e.g. 1.0)"] if cfg.optim.grad_clip <= 0 else [])
    return (f"loss was not finite for {state.bad_steps} steps in a row (last at step {state.step + 1}, "
            f"lr {lr:.4g}, AMP {amp}, grad scale 1.0 - no loss scaling is used with bf16 or full "
            f"precision; {state.skipped_steps} steps skipped in all); {', '.join(fixes)}")


def skip_step(t: Training, state: LoopState, lr: float) -> None:
    """Drop the gradients of a non-finite step, repair buffers, count it; too many in a row stop."""
    t.optimizer.zero_grad(set_to_none=True)
    state.bad_steps += 1
    state.skipped_steps += 1
    repaired = repair_buffers(t.method)
    t.events.log(f"non-finite loss at step {state.step + 1}: update skipped "
                 f"({state.skipped_steps} skipped so far)" +
                 (f"; reset {len(repaired)} buffer(s) the bad batch had made non-finite "
                  f"({', '.join(repaired[:3])})" if repaired else ""), level="warning",
                 step=state.step + 1, skipped_steps=state.skipped_steps)
    if state.bad_steps >= MAX_BAD_STEPS:
        raise WorkbenchError(nan_stop_message(state, lr, t.amp_dtype, t.cfg))
    state.step += 1


def apply_update(t: Training, progress: float) -> dict:
    """Clip, the method's pre-step hook, the optimiser step, then EMA targets; returns extras."""
    o = t.cfg.optim
    if o.grad_clip > 0 and o.grad_clip_mode == "per_parameter":
        clip_grad_per_param_(t.method.parameters(), o.grad_clip)
    elif o.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(t.method.parameters(), o.grad_clip)
    t.method.before_optimizer_step(progress)
    t.optimizer.step()
    t.optimizer.zero_grad(set_to_none=True)
    return t.method.after_optimizer_step(progress)


def buffer_scalars(t: Training, state: LoopState, loss, lr: float, extras: dict, images: int) -> None:
    """Queue the finished step's scalars (and, every metrics_every_steps, the probe metrics)."""
    cfg = t.cfg
    scalars = {"loss": loss, "lr": torch.tensor(lr)}
    for name, value in extras.items():
        scalars[f"{cfg.method.name}/{name}"] = torch.as_tensor(value)
    spectra = {} if spectrum_due(cfg.eval.spectrum_every_steps, state.step) else None
    if t.probe is not None and (state.step % cfg.eval.metrics_every_steps == 0 or state.step == 1 or spectra is not None):
        probe_values = probe_metrics(t.method, t.probe, t.amp_dtype, spectra)
        scalars.update(probe_values)
        note_collapse(t.collapse, state.step, probe_values, t.events)
        emit_spectra(t.events, state.step, state.epoch, spectra or {})
    state.pending.append((state.step, state.epoch, scalars))
    state.images_since_flush += images


def optimisation_step(t: Training, state: LoopState, order: torch.Tensor, batch_index: int) -> None:
    """Train on batch ``batch_index`` of the epoch's ``order`` and advance ``state.step``."""
    idx = rank_indices(t, order, batch_index)
    lr = lr_at(state.step, t.total_steps, t.warmup_steps, t.peak, t.cfg.schedule.min_lr_ratio)
    set_scheduled_lr(t.optimizer, lr, peak=t.peak)
    if t.cfg.optim.weight_decay_end:
        set_weight_decay(t.optimizer, wd_at(state.step, t.total_steps, t.cfg))
    progress = state.step / max(1, t.total_steps)
    # The true epoch (float) for recipes counted in epochs, right also when max_steps cuts the run.
    t.method.epoch = epoch_at(state.step, max(1, t.steps_per_epoch))
    loss, out = forward_backward(t, idx, progress)
    loss = faults.inject(state.step + 1, loss)  # test-only, inert without SSLWB_FAULT
    # A non-finite loss skips the update (weights stay finite); many in a row stop the run.
    if not loss_is_finite(t, loss):
        skip_step(t, state, lr)
        return
    state.bad_steps = 0
    extras = apply_update(t, progress)
    state.step += 1
    state.last_loss = loss
    buffer_scalars(t, state, loss, lr, {**out.extras, **extras}, len(idx) * t.world)
