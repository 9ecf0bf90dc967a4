"""Fine-tuning evaluation: the checkpoint's backbone plus a new linear classifier, trained end to
end on the labelled train split and scored on the test split.

Where the linear probe asks "how linearly separable are the frozen features", fine-tuning asks
"how good a starting point is this encoder". The recipe is the usual small-scale one: random
resized crop (scale 0.2-1) + horizontal flip, SGD with momentum 0.9 and Nesterov, cosine decay
without warm-up, the backbone at ``backbone_lr_scale`` times the classifier's learning rate, label
smoothing 0.1, bf16 autocast on CUDA. The run's checkpoint is never modified: the fine-tuned
weights live only in memory, and the result (top-1/top-5, confusion matrix, the settings) is
appended to the run's evaluations.jsonl as kind ``finetune`` (when a run directory is given).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time

import torch
import torch.nn.functional as F
from torch import nn

from .data.augment import ViewGenerator
from .data.sources import load_dataset
from .devices import autocast_dtype, resolve_device
from .errors import ConfigError, DataError
from .evaluate import extract_features, subset_indices
from .linear_probe import classification_scores
from .reporter import as_reporter
from .restore import restore_method
from .runs import record_evaluation


def finetune_augment(aug):
    """The fine-tuning views: one random resized crop (scale 0.2-1) + flip, no colour changes."""
    return dataclasses.replace(aug, crop_scale=[0.2, 1.0], jitter_prob=0.0, grayscale_prob=0.0, blur_prob=0.0,
                               solarize_prob=0.0, num_global_crops=1, num_local_crops=0)


def fine_tune(run_dir, *, checkpoint=None, epochs: int = 10, lr: float = 0.05, backbone_lr_scale: float = 0.1,
              batch_size: int = 128, weight_decay: float = 5e-4, train_limit: int = 0, device: str = "cpu",
              seed: int = 0, record: bool = True, progress=None, cancelled=None) -> dict:
    """Top-1/top-5 and confusion matrix of the checkpoint's backbone fine-tuned with a linear head.

    ``lr`` is the classifier's learning rate per 256 images (scaled by ``batch_size / 256``);
    ``train_limit`` caps the training images (0 = all). Raises ConfigError for bad settings,
    DataError for unlabelled data and :class:`backend.errors.Cancelled` when ``cancelled()``
    turns true (nothing is recorded then)."""
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if int(value) < 1:
            raise ConfigError(f"fine-tune {name} must be at least 1, got {value}")
    for name, value in (("lr", lr), ("backbone_lr_scale", backbone_lr_scale)):
        if not (math.isfinite(value) and value >= 0) or (name == "lr" and value == 0):
            raise ConfigError(f"fine-tune {name} must be a positive number, got {value}")
    report = as_reporter(progress, cancelled)
    start = time.perf_counter()
    dev = resolve_device(device)
    report(0.0, "loading the checkpoint and data")
    method, cfg, path = restore_method(run_dir, checkpoint, device=dev)
    train = load_dataset(cfg.data, "train", seed=cfg.runtime.seed)
    test = load_dataset(cfg.data, "test", seed=cfg.runtime.seed)
    for split in (train, test):
        if split.labels is None:
            raise DataError("fine-tuning needs labels but this run's data is unlabelled (no class folders)")
    num_classes = len(train.class_names)
    keep = subset_indices(len(train), train_limit, seed)
    images, labels = train.images[keep], train.labels[keep].long()
    if len(images) < 2:
        raise DataError(f"fine-tuning needs at least 2 training images, got {len(images)}")
    batch_size = min(int(batch_size), len(images))

    torch.manual_seed(seed)
    backbone = copy.deepcopy(method.backbone).to(dev).train()
    del method
    classifier = nn.Linear(_feature_dim(backbone, cfg, dev), num_classes).to(dev)
    scaled_lr = lr * batch_size / 256
    opt = torch.optim.SGD([{"params": backbone.parameters(), "lr": scaled_lr * backbone_lr_scale},
                           {"params": classifier.parameters(), "lr": scaled_lr}],
                          momentum=0.9, nesterov=True, weight_decay=weight_decay)
    base_lrs = [g["lr"] for g in opt.param_groups]
    views = ViewGenerator(finetune_augment(cfg.augment), cfg.data.image_size)
    amp = autocast_dtype("auto", dev) if dev.type == "cuda" else None
    gen = torch.Generator().manual_seed(seed)
    steps_per_epoch = len(images) // batch_size
    total = epochs * steps_per_epoch
    step, loss_value = 0, float("nan")
    for epoch in range(epochs):
        order = torch.randperm(len(images), generator=gen)
        for i in range(steps_per_epoch):
            report.check()
            idx = order[i * batch_size:(i + 1) * batch_size]
            x = views(images[idx].to(dev, non_blocking=True), generator=gen)[0]
            y = labels[idx].to(dev)
            for group, base in zip(opt.param_groups, base_lrs):
                group["lr"] = base * 0.5 * (1 + math.cos(math.pi * step / total))
            with torch.autocast(dev.type, dtype=amp, enabled=amp is not None):
                logits = classifier(backbone(x).flatten(1))
            loss = F.cross_entropy(logits.float(), y, label_smoothing=0.1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            if step % 10 == 0 or step == total:
                loss_value = loss.item()
                if not math.isfinite(loss_value):
                    raise DataError(f"fine-tuning diverged at step {step} (loss {loss_value}): lower the learning "
                                    f"rate (now {lr} per 256 images)")
                report(0.05 + 0.85 * step / total, f"fine-tuning: epoch {epoch + 1}/{epochs}, loss {loss_value:.3f}")
    report(0.92, "scoring the test split")
    encoder = nn.Sequential(backbone, nn.Flatten(1), classifier)
    logits = extract_features(encoder, test.images, views.eval_views, device=dev, batch_size=256,
                              autocast_dtype=amp)
    result = {"kind": "finetune", "source": "checkpoint",
              **classification_scores(logits, test.labels.long(), num_classes),
              "class_names": list(train.class_names), "epochs": int(epochs), "lr": float(lr),
              "backbone_lr_scale": float(backbone_lr_scale), "batch_size": int(batch_size),
              "weight_decay": float(weight_decay), "optimizer": "sgd-nesterov", "label_smoothing": 0.1,
              "final_train_loss": loss_value, "features": "backbone", "split": "test", "bank": "train",
              "bank_size": int(len(images)), "queries": int(len(test)), "checkpoint": path.name,
              "seconds": round(time.perf_counter() - start, 3)}
    report(1.0, f"fine-tune top-1 {result['top1']:.3f}")
    if record and run_dir is not None:
        record_evaluation(run_dir, result)
    return result


@torch.no_grad()
def _feature_dim(backbone: nn.Module, cfg, device) -> int:
    """Width of the backbone's flattened output (probed on one blank image)."""
    was_training = backbone.training
    backbone.eval()
    dim = backbone(torch.zeros(1, 3, cfg.data.image_size, cfg.data.image_size, device=device)).flatten(1).shape[1]
    backbone.train(was_training)
    return int(dim)
