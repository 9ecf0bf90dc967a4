"""Fine-tuning evaluation: a checkpoint's backbone plus a new linear classifier, trained end to
end on the labelled train split and scored on the test split, as a run of its own.

Where the linear probe asks "how linearly separable are the frozen features", fine-tuning asks
"how good a starting point is this encoder". The recipe is the usual small-scale one: random
resized crop (scale 0.2-1) + horizontal flip, SGD with momentum 0.9 and Nesterov, cosine decay
without warm-up, the backbone at ``backbone_lr_scale`` times the classifier's learning rate, label
smoothing 0.1, bf16 autocast on CUDA. It is the ``finetune`` method (backend/methods/finetune.py)
trained by the one engine: :func:`create_finetune_run` makes a normal run directory next to the
source run (``model.init_checkpoint`` = the source checkpoint, which is never modified),
``sslwb train`` or the GUI's trainer process trains it, and at the end the run records the result
(top-1/top-5, confusion matrix, the settings) as kind ``finetune`` in its own evaluations.jsonl and
in the source run's (``model.source_run``). :func:`fine_tune` does all of that in this process.
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path

from torch import nn

from .config import ExperimentConfig
from .control import TrainerControl
from .errors import Cancelled, ConfigError, DataError, WorkbenchError
from .evaluate import extract_features
from .label_subsets import balanced_subset
from .reporter import as_reporter
from .linear_probe import classification_scores
from .runs import create_run, read_evaluations, read_run_config, record_evaluation, run_events
from .restore import resolve_checkpoint

RESULT_KIND = "finetune"


def finetune_augment(aug):
    """The fine-tuning views: one random resized crop (scale 0.2-1) + flip, no colour changes."""
    return dataclasses.replace(aug, crop_scale=[0.2, 1.0], jitter_prob=0.0, grayscale_prob=0.0, blur_prob=0.0,
                               solarize_prob=0.0, num_global_crops=1, num_local_crops=0)


def _check_settings(epochs, lr, backbone_lr_scale, batch_size) -> None:
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if int(value) < 1:
            raise ConfigError(f"fine-tune {name} must be at least 1, got {value}")
    for name, value in (("lr", lr), ("backbone_lr_scale", backbone_lr_scale)):
        if not (math.isfinite(value) and value >= 0) or (name == "lr" and value == 0):
            raise ConfigError(f"fine-tune {name} must be a positive number, got {value}")


def _source_config(run_dir, checkpoint: Path) -> ExperimentConfig:
    if run_dir is not None and (Path(run_dir) / "config.json").exists():
        return read_run_config(run_dir)
    from .checkpoint import load_checkpoint
    saved = load_checkpoint(checkpoint).get("config")
    if not isinstance(saved, dict):
        raise ConfigError(f"cannot find the config for {checkpoint}: no config.json beside it and none inside it")
    return ExperimentConfig.from_dict(saved)


def _train_limit(train_limit: int, source: ExperimentConfig) -> int:
    """The fine-tune run's ``data.train_limit``: the smaller of its own and the source's (0 = all)."""
    limit = min(x for x in (train_limit, source.data.train_limit, 10**12) if x > 0)
    return 0 if limit == 10**12 else int(limit)


def finetune_config(source: ExperimentConfig, checkpoint, *, epochs: int, lr: float, backbone_lr_scale: float,
                    batch_size: int, weight_decay: float, train_limit: int, device: str, seed: int,
                    source_run="", label_fraction: float = 1.0, subset_seed: int = 0) -> ExperimentConfig:
    """The config of a run that fine-tunes ``checkpoint`` (trained with ``source``), on the
    class-balanced ``label_fraction`` subset (seed ``subset_seed``) of the labelled images."""
    data = source.to_dict()
    data.update(name=f"finetune of {Path(source_run).name or Path(checkpoint).stem}",
                method={**data["method"], "name": "finetune", "label_fraction": float(label_fraction),
                        "subset_seed": int(subset_seed)},
                augment=dataclasses.asdict(finetune_augment(source.augment)))
    data["model"].update(init_checkpoint=str(Path(checkpoint).resolve()),
                         source_run=str(Path(source_run).resolve()) if source_run else "")
    data["data"]["train_limit"] = _train_limit(train_limit, source)
    data["optim"].update(optimizer="sgd", lr=float(lr), momentum=0.9, nesterov=True, weight_decay=float(weight_decay),
                         batch_size=int(batch_size), grad_accum_steps=1, grad_clip=0.0,
                         backbone_lr_scale=float(backbone_lr_scale))
    data["schedule"] = {"epochs": int(epochs), "warmup_epochs": 0.0, "min_lr_ratio": 0.0, "max_steps": 0}
    data["eval"].update(knn_every_epochs=0)
    data["runtime"].update(device=device, seed=int(seed), amp="auto", compile=False, checkpoint_every_epochs=1,
                           keep_epoch_checkpoints=False)
    return ExperimentConfig.from_dict(data)


def create_finetune_run(run_dir, *, checkpoint=None, epochs: int = 10, lr: float = 0.05,
                        backbone_lr_scale: float = 0.1, batch_size: int = 128, weight_decay: float = 5e-4,
                        train_limit: int = 0, device: str = "cpu", seed: int = 0, record: bool = True,
                        label_fraction: float = 1.0, subset_seed: int = 0) -> Path:
    """A new run directory that fine-tunes the run's checkpoint (default ``last.pt``), created in
    the source run's workspace (``<workspace>/runs/<id>-finetune-of-<source>``); train it with
    ``run_training`` or ``sslwb train``. ``lr`` is the classifier's learning rate per 256 images;
    ``train_limit`` caps the training images (0 = all); ``label_fraction`` < 1 trains on the
    class-balanced subset of that fraction of them (``backend.label_subsets``, ``subset_seed``);
    the batch is capped at the training images used.
    ``record``: the result also goes to ``run_dir``'s evaluations.jsonl. Raises ConfigError for
    bad settings and DataError for unlabelled data (before anything is created)."""
    from .data.sources import load_dataset

    _check_settings(epochs, lr, backbone_lr_scale, batch_size)
    path = resolve_checkpoint(run_dir, checkpoint)
    source = _source_config(run_dir, path)
    if not 0.0 < float(label_fraction) <= 1.0:
        raise ConfigError(f"fine-tune label_fraction must be in (0, 1], got {label_fraction}")
    data_cfg = dataclasses.replace(source.data, train_limit=_train_limit(train_limit, source))
    train = load_dataset(data_cfg, "train", seed=int(seed))  # what the run will train on (the data cache)
    if train.labels is None:
        raise DataError("fine-tuning needs labels but this run's data is unlabelled (no class folders)")
    available = len(train)
    if label_fraction < 1.0:
        available = len(balanced_subset(train.labels.numpy(), label_fraction, int(subset_seed)))
    if available < 2:
        raise DataError(f"fine-tuning needs at least 2 training images, got {available}")
    cfg = finetune_config(source, path, epochs=epochs, lr=lr, backbone_lr_scale=backbone_lr_scale,
                          batch_size=min(int(batch_size), available), weight_decay=weight_decay,
                          train_limit=train_limit, device=device, seed=seed,
                          source_run=run_dir if (record and run_dir is not None) else "",
                          label_fraction=label_fraction, subset_seed=subset_seed)
    if run_dir is not None:
        home = Path(run_dir)
    else:  # a checkpoint file alone: its run is RUN/checkpoints/<file>, else its folder
        home = path.parent.parent if path.parent.name == "checkpoints" else path.parent
    workspace = home.parent.parent if home.parent.name == "runs" else home.parent
    return create_run(workspace, cfg)


def record_finetune_result(training) -> dict:
    """Score the trained classifier on the test split and record the result (kind ``finetune``)
    in the fine-tune run and, when ``model.source_run`` is set, in the source run. Called by the
    ``finetune`` method when the engine finishes."""
    t, cfg, method = training, training.cfg, training.method
    encoder = nn.Sequential(method.backbone, nn.Flatten(1), method.classifier)
    logits = extract_features(encoder, t.test_set.images, t.views.eval_views, device=t.device, batch_size=256,
                              autocast_dtype=t.amp_dtype, channels_last=t.channels_last)
    num_classes = len(t.train_set.class_names)
    last_loss = t.state.last_loss
    result = {"kind": RESULT_KIND, "source": "checkpoint" if cfg.model.init_checkpoint else "random_init",
              **classification_scores(logits, t.test_set.labels.long(), num_classes),
              "class_names": list(t.train_set.class_names), "epochs": cfg.schedule.epochs, "lr": cfg.optim.lr,
              "backbone_lr_scale": cfg.optim.backbone_lr_scale, "batch_size": cfg.optim.batch_size,
              "weight_decay": cfg.optim.weight_decay,
              "optimizer": "sgd-nesterov" if cfg.optim.nesterov else cfg.optim.optimizer,
              "label_smoothing": cfg.method.label_smoothing, "label_fraction": float(cfg.method.label_fraction),
              "subset_seed": int(cfg.method.subset_seed), "subset_size": len(t.train_set),
              "final_train_loss": float(last_loss) if last_loss is not None else float("nan"),
              "features": "backbone", "split": "test", "bank": "train", "bank_size": len(t.train_set),
              "queries": len(t.test_set), "checkpoint": Path(cfg.model.init_checkpoint).name or "random init",
              "finetune_run": str(t.run_dir), "step": t.state.step,
              "seconds": round(time.perf_counter() - t.started, 3)}
    record_evaluation(t.run_dir, result)
    target = cfg.model.source_run
    if target:
        record_evaluation(target, result)
    t.events.log(f"fine-tune top-1 {result['top1']:.4f}, top-{result['top5_k']} {result['top5']:.4f} on "
                 f"{result['queries']} test images" + (f"; recorded in {Path(target).name}" if target else ""),
                 top1=result["top1"], top5=result["top5"])
    return result


def finetune_result(finetune_run) -> dict | None:
    """The result a finished fine-tune run recorded (None when it has none)."""
    found = [r for r in read_evaluations(finetune_run) if r.get("kind") == RESULT_KIND]
    return found[-1] if found else None


def run_failure(finetune_run, exit_code: int) -> WorkbenchError:
    """The error a failed fine-tune run reported, as the matching WorkbenchError."""
    errors = [e for e in run_events(finetune_run) if e["kind"] == "error"]
    message = errors[-1]["message"] if errors else f"fine-tuning exited with code {exit_code}"
    return {2: ConfigError, 3: DataError}.get(exit_code, WorkbenchError)(message)


class _CancellableControl(TrainerControl):
    """Trainer control for an in-process fine-tune: a stop request once ``cancelled()`` turns true."""

    def __init__(self, cancelled):
        super().__init__(read_stdin=False)
        self.poll, self.cancelled = cancelled, False

    def wait_while_paused(self, on_pause=None, on_resume=None, on_checkpoint=None) -> None:
        if self.poll is not None and self.poll():
            self.cancelled = True
            self.request("stop", reason="fine-tuning cancelled")
        super().wait_while_paused(on_pause, on_resume, on_checkpoint)


class _Progress:
    """Event listener: fine-tuning progress from the trainer's loss events."""

    def __init__(self, report, epochs: int):
        self.report, self.epochs, self.total = report, epochs, 0

    def __call__(self, event: dict) -> None:
        if isinstance(event.get("total_steps"), int):
            self.total = event["total_steps"]
        if event.get("kind") == "metric" and event.get("name") == "loss" and self.total:
            self.report(0.05 + 0.85 * event["step"] / self.total,
                        f"fine-tuning: epoch {event['epoch'] + 1}/{self.epochs}, loss {event['value']:.3f}")


def fine_tune(run_dir, *, checkpoint=None, epochs: int = 10, lr: float = 0.05, backbone_lr_scale: float = 0.1,
              batch_size: int = 128, weight_decay: float = 5e-4, train_limit: int = 0, device: str = "cpu",
              seed: int = 0, record: bool = True, progress=None, cancelled=None, label_fraction: float = 1.0,
              subset_seed: int = 0) -> dict:
    """Create a fine-tune run of ``run_dir``'s checkpoint (:func:`create_finetune_run`), train it
    in this process and return its result (top-1/top-5, confusion matrix, settings, the run's
    path as ``finetune_run``). Raises ConfigError/DataError like the trainer, and
    :class:`backend.inspect.Cancelled` when ``cancelled()`` turns true (the run is then stopped,
    resumable, and nothing is recorded)."""
    from .train import run_training

    report = as_reporter(progress, cancelled)
    report(0.0, "preparing the fine-tune run")
    run = create_finetune_run(run_dir, checkpoint=checkpoint, epochs=epochs, lr=lr,
                              backbone_lr_scale=backbone_lr_scale, batch_size=batch_size,
                              weight_decay=weight_decay, train_limit=train_limit, device=device, seed=seed,
                              record=record, label_fraction=label_fraction, subset_seed=subset_seed)
    control = _CancellableControl(report.cancelled)
    code = run_training(run, control=control, echo=False, on_event=_Progress(report, epochs))
    if control.cancelled:
        raise Cancelled("fine-tuning cancelled")
    result = finetune_result(run) if code == 0 else None
    if result is None:
        raise run_failure(run, code)
    report(1.0, f"fine-tune top-1 {result['top1']:.3f}")
    return result
