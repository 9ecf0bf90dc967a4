"""Per-step scalars: the buffered flush to the event stream and the probe-batch metrics."""

from __future__ import annotations

import time

import torch

from .. import metrics as M
from ..collapse import CollapseMonitor
from ..spectrum import spectrum_record
from .state import LoopState

FLUSH_SECONDS = 0.5         # how often buffered per-step scalars are emitted


def flush(state: LoopState, events, force: bool = False) -> None:
    """Emit the buffered per-step scalars as metric events (plus throughput) at most every
    FLUSH_SECONDS unless ``force``: one device-to-host copy per flush for all of them. (The loop
    itself still syncs once per step for its finite-loss check, see ``step.loss_is_finite``.)"""
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


def spectrum_due(every: int, step: int) -> bool:
    """Whether the probe's eigenspectrum is read at ``step`` (every ``every`` steps and at step 1;
    never when ``every`` is 0)."""
    return every > 0 and (step % every == 0 or step == 1)


def emit_spectra(events, step: int, epoch: int, spectra: dict) -> None:
    """One ``spectrum`` metric event per embedding (``backend.spectrum.spectrum_record`` fields)."""
    for name, record in spectra.items():
        events.emit("metric", step=int(step), epoch=int(epoch), **{**record, "name": name})


@torch.no_grad()
def probe_metrics(method, probe, amp_dtype, spectra: dict | None = None) -> dict[str, torch.Tensor]:
    """Alignment, uniformity, embedding_std and effective rank of projector and backbone outputs.
    With a ``spectra`` dict, also fills it with the eigenspectrum records of the first view's
    projector (``spectrum``) and backbone (``backbone_spectrum``) outputs: one SVD of the probe
    batch (N x D) each, on the CPU."""
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
        if spectra is not None:
            spectra[prefix + "spectrum"] = spectrum_record(a)
    return out


def note_collapse(monitor: CollapseMonitor, step: int, values: dict, events) -> None:
    """A warning event at the onset of collapse, a note when it clears (one host sync per probe)."""
    change = monitor.update(step, float(values["embedding_std"]), float(values["effective_rank"]))
    if change is not None:
        kind, message = change
        events.log(message, level="warning" if kind == "collapse" else "info", warning=kind, step=step,
                   embedding_std=float(values["embedding_std"]),
                   effective_rank=float(values["effective_rank"]))
