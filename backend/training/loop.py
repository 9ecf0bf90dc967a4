"""The training loop: epochs of optimisation steps, control requests between steps, kNN and
checkpoints at the end of an epoch, the final report. Reads top to bottom in ``Trainer.fit``."""

from __future__ import annotations

import time

import torch

from .. import distributed as D
from ..evaluate import extract_features, knn_top1, subset_indices
from ..metrics_h5 import MetricsH5Writer
from ..runs import record_evaluation
from .feed import lazy_rows
from .scalars import flush
from .setup import Training
from .state import checkpoint_payload, commit_checkpoint
from .step import optimisation_step, rank_indices, sync_device
from .tensorboard import open_tensorboard


class Trainer:
    """Runs a prepared :class:`Training` to its end, a stop request or an error."""

    def __init__(self, training: Training):
        self.t = training
        self.state = training.state
        self.knn_bank_size: int | None = None  # bank size of the last online kNN (recorded with it)
        # metrics.h5 grows by appends; a resumed run rebuilds it once (the resume cut) first.
        self.metrics = MetricsH5Writer(training.run_dir) if training.dist.is_main else None
        self.board = open_tensorboard(training)  # runtime.tensorboard: rank 0's TensorBoard files

    def fit(self) -> int:
        """Train every remaining step; 0 when finished or stopped (raises on errors)."""
        t, state = self.t, self.state
        t.events.status("running", f"{t.total_steps} steps ({t.steps_per_epoch} per epoch, "
                        f"batch {t.cfg.optim.batch_size})", total_steps=t.total_steps,
                        steps_per_epoch=t.steps_per_epoch, epochs=t.cfg.schedule.epochs)
        t.method.train()
        try:
            while state.step < t.total_steps:
                # Epoch time is training time: what the run spends paused is taken out.
                epoch, epoch_start = state.epoch, time.perf_counter() - t.control.paused_seconds
                order = self.epoch_order(epoch)
                first = state.step - epoch * t.steps_per_epoch
                last = min(t.steps_per_epoch, first + t.total_steps - state.step)
                t.feed.plan([rank_indices(t, order, b) for b in range(first, last)])  # a stream prefetches them
                for batch_index in range(first, t.steps_per_epoch):
                    if state.step >= t.total_steps:
                        break
                    if self.handle_requests():
                        return self.stopped()
                    optimisation_step(t, state, order, batch_index)
                    flush(state, t.events)
                self.end_of_epoch(epoch, epoch_start)
            return self.finished()
        finally:
            t.feed.release()

    # ---- the steps of fit ------------------------------------------------------------------
    def epoch_order(self, epoch: int) -> torch.Tensor:
        """The epoch's order depends only on (seed, epoch): a resumed run replays it exactly."""
        gen = torch.Generator().manual_seed(self.t.cfg.runtime.seed * 1000 + epoch)
        return torch.randperm(len(self.t.train_set), generator=gen)

    def handle_requests(self) -> bool:
        """Wait while paused, save a requested checkpoint; True when the run must stop now."""
        t, state = self.t, self.state
        on_pause = lambda: t.events.status("paused", f"paused at step {state.step}")  # noqa: E731
        on_resume = lambda: t.events.status("running", "resumed after pause")  # noqa: E731
        if t.dist.enabled:
            stop_now, checkpoint_now = self.pause_together(on_pause, on_resume)
        else:   # a checkpoint asked for while paused is written at once
            t.control.wait_while_paused(on_pause, on_resume, on_checkpoint=lambda: self.checkpoint("requested"))
            stop_now, checkpoint_now = agree_on_requests(t.control)[:2]
        if stop_now:
            return True
        if checkpoint_now:
            self.checkpoint("requested")
        return False

    def pause_together(self, on_pause, on_resume, poll_s: float = 0.2) -> tuple[bool, bool]:
        """Under torchrun: (stop, checkpoint) agreed by every rank, every rank waiting while any
        is paused (only rank 0 reads the workbench's commands). The ranks agree again every
        ``poll_s`` while paused, so no collective waits longer than that (a long pause never
        reaches the process group's timeout), and a checkpoint asked for while paused is written
        at once by all of them."""
        control, started = self.t.control, None
        while True:
            stop, checkpoint, paused = agree_on_requests(control)
            if stop or not paused:
                break
            if started is None:
                started = time.perf_counter()
                on_pause()
            if checkpoint:
                self.checkpoint("requested")
                continue
            control.wake.wait(poll_s)
            control.wake.clear()
        if started is not None:
            control.paused_seconds += time.perf_counter() - started
            if not stop:
                on_resume()
        return stop, checkpoint

    def end_of_epoch(self, epoch: int, epoch_start: float) -> None:
        """After the epoch's steps: flush, epoch time, kNN when due, checkpoint when due."""
        t, state = self.t, self.state
        flush(state, t.events, force=True)
        finished_epoch = state.step // t.steps_per_epoch
        if not (finished_epoch > epoch or state.step >= t.total_steps):
            return  # no epoch boundary and not the last step: nothing is due
        t.events.metric("epoch_time", time.perf_counter() - t.control.paused_seconds - epoch_start,
                        state.step, epoch)
        last = state.step >= t.total_steps
        every = t.cfg.eval.knn_every_epochs
        if last or (every and (epoch + 1) % every == 0):
            self.knn(epoch)
        state.epoch = finished_epoch
        if last or (epoch + 1) % t.cfg.runtime.checkpoint_every_epochs == 0:
            self.checkpoint(f"epoch {epoch + 1}")

    def knn(self, epoch: int) -> None:
        """The online kNN metric (rank 0 computes, every rank waits)."""
        t, state = self.t, self.state
        t0 = time.perf_counter()
        value, bank_size = evaluate_knn(t)
        D.barrier()
        if value is not None:
            state.last_knn, self.knn_bank_size = value, bank_size
            t.events.metric("knn_top1", value, state.step, epoch, k=t.cfg.eval.knn_k,
                            temperature=t.cfg.eval.knn_temperature, features="backbone",
                            bank_size=bank_size, seconds=round(time.perf_counter() - t0, 3))

    def checkpoint(self, reason: str) -> None:
        """Flush scalars, commit a checkpoint on rank 0 (events synced, metrics.h5 appended)."""
        t = self.t
        flush(self.state, t.events, force=True)
        if t.dist.is_main:
            commit_checkpoint(t.run_dir, checkpoint_payload(t.method, t.optimizer, t.aug_gen, self.state, t.cfg),
                              t.events, reason, t.cfg.runtime.keep_epoch_checkpoints and reason.startswith("epoch"),
                              self.metrics)
            if self.board is not None:
                self.board.projector(t)
        D.barrier()

    def stopped(self) -> int:
        """Checkpoint and report a stop (resumable)."""
        t, state = self.t, self.state
        self.checkpoint(t.control.stop_reason or "stop requested")
        t.events.status("stopped", f"stopped at step {state.step} ({t.control.stop_reason}); resume to continue",
                        step=state.step, epoch=state.epoch)
        self.close_board()
        return 0

    def finished(self) -> int:
        """Record the online kNN (and a method's final evaluation, e.g. fine-tuning's), report the end."""
        t, state = self.t, self.state
        if state.last_knn is not None:
            record_evaluation(t.run_dir, {"kind": "knn", "source": "online", "top1": state.last_knn,
                                          "k": t.cfg.eval.knn_k, "temperature": t.cfg.eval.knn_temperature,
                                          "features": "backbone", "normalize": "l2", "split": "test",
                                          "bank": "train", "bank_limit": t.cfg.eval.knn_train_limit,
                                          "bank_size": self.knn_bank_size,
                                          "step": state.step, "checkpoint": "last.pt"})
        final = getattr(t.method, "final_evaluation", None)
        if final is not None and t.dist.is_main:
            final(t)
        t.events.status("finished", f"finished {state.step} steps" +
                        (f"; kNN top-1 {state.last_knn:.3f}" if state.last_knn is not None else ""),
                        step=state.step, epoch=state.epoch)
        self.close_board()
        return 0

    def close_board(self) -> None:
        """Close the TensorBoard files (when runtime.tensorboard is on)."""
        if self.board is not None:
            self.board.close()


def agree_on_requests(control) -> tuple[bool, bool, bool]:
    """(stop, checkpoint, paused) requests; under torchrun every rank acts if any rank was asked."""
    flags = torch.tensor([control.stop_requested.is_set(), control.take_checkpoint_request(),
                          control.paused.is_set()], dtype=torch.float32)
    if D.is_enabled():
        flags = D.all_reduce_sum(flags.to(sync_device()))
    stop, ckpt, paused = (bool(f > 0) for f in flags.tolist())
    if stop and not control.stop_requested.is_set():
        control.request("stop", reason="another rank was asked to stop")
    return stop, ckpt, paused


def evaluate_knn(t: Training) -> tuple[float | None, int]:
    """(kNN top-1 of backbone features, bank size): bank = the train split (or the
    ``eval.knn_train_limit`` subset), queries = test split; similarities in query chunks on the
    training device. (None, 0) without labels or off rank 0."""
    train_set, test_set, cfg = t.train_set, t.test_set, t.cfg
    if not (train_set.labelled and test_set.labelled) or not t.dist.is_main:
        return None, 0
    bank_idx = subset_indices(len(train_set), cfg.eval.knn_train_limit, cfg.runtime.seed + 4)
    kw = dict(device=t.device, autocast_dtype=t.amp_dtype, channels_last=t.channels_last)
    encoder = t.method.feature_encoder()   # the backbone behind the method's input adapter, if any
    bank = extract_features(encoder, lazy_rows(train_set, bank_idx), t.views.eval_views, **kw)
    queries = extract_features(encoder, lazy_rows(test_set), t.views.eval_views, **kw)
    top1 = knn_top1(bank, train_set.labels[bank_idx], queries, test_set.labels,
                    num_classes=max(len(train_set.class_names), 1), k=cfg.eval.knn_k,
                    temperature=cfg.eval.knn_temperature, device=t.device)
    return top1, int(len(bank_idx))
