"""Evaluation on frozen features: feature extraction in batches and weighted kNN."""

from __future__ import annotations

import torch
from torch import nn

from .metrics import knn_predict


@torch.no_grad()
def extract_features(encoder: nn.Module, images: torch.Tensor, preprocess, *, device,
                     batch_size: int = 512, autocast_dtype=None, channels_last: bool = False) -> torch.Tensor:
    """Features (N, F) float32 on the CPU of uint8 ``images`` (N, 3, H, W) passed through
    ``preprocess`` (uint8 batch on device -> normalised float) and ``encoder`` in eval mode."""
    was_training = encoder.training
    encoder.eval()
    out = []
    try:
        for start in range(0, images.shape[0], batch_size):
            batch = images[start:start + batch_size].to(device, non_blocking=True)
            x = preprocess(batch)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device_type=torch.device(device).type, dtype=autocast_dtype,
                                enabled=autocast_dtype is not None):
                feats = encoder(x)
            out.append(feats.float().cpu())
    finally:
        encoder.train(was_training)
    return torch.cat(out) if out else torch.empty(0, 0)


def knn_top1(train_features, train_labels, test_features, test_labels, *, num_classes: int,
             k: int = 200, temperature: float = 0.1, device=None) -> float:
    """Top-1 accuracy of weighted cosine kNN (bank = train features) on the test features; with
    ``device`` the bank and queries move there first (similarities are computed in query chunks of
    512, so a 50k x 512 bank needs ~100 MB plus 512 x 50k scores at a time)."""
    if device is not None:
        train_features, train_labels = train_features.to(device), train_labels.to(device)
        test_features = test_features.to(device)
    pred = knn_predict(test_features, train_features, train_labels, num_classes, k=k, temperature=temperature)
    return (pred.cpu() == test_labels.cpu()).float().mean().item()


def subset_indices(n: int, limit: int, seed: int) -> torch.Tensor:
    """A deterministic subset of ``range(n)`` of size ``limit`` (all when limit is 0 or >= n)."""
    if limit <= 0 or limit >= n:
        return torch.arange(n)
    g = torch.Generator().manual_seed(seed)
    return torch.randperm(n, generator=g)[:limit].sort().values


def evaluate_knn_checkpoint(run_dir, *, checkpoint=None, k: int = 200, temperature: float = 0.1,
                            features: str = "backbone", device: str = "cpu", random_init: bool = False,
                            record: bool = True, on_warning=None) -> dict:
    """kNN top-1 of a run's checkpoint (bank = train split, queries = held-out split).

    The result holds the parameters that produced it (k, T, feature source, normalisation, split,
    bank size) and, when ``record``, is appended to the run's evaluations.jsonl."""
    from .data.augment import ViewGenerator
    from .data.sources import load_dataset
    from .devices import resolve_device
    from .errors import ConfigError, DataError
    from .restore import restore_method
    from .runs import record_evaluation

    if features not in ("backbone", "projector"):
        raise ConfigError(f"features must be backbone or projector, got {features!r}")
    dev = resolve_device(device)
    method, cfg, path = restore_method(run_dir, checkpoint, device=dev, random_init=random_init)
    train_set = load_dataset(cfg.data, "train", seed=cfg.runtime.seed, on_warning=on_warning)
    test_set = load_dataset(cfg.data, "test", seed=cfg.runtime.seed, on_warning=on_warning)
    if not (train_set.labelled and test_set.labelled):
        raise DataError(f"kNN needs labels but {cfg.data.source} is unlabelled (no class folders)")
    views = ViewGenerator(cfg.augment, cfg.data.image_size)
    encoder = method.feature_encoder(projector=features == "projector")
    bank_idx = subset_indices(len(train_set), cfg.eval.knn_train_limit, cfg.runtime.seed + 4)
    bank = extract_features(encoder, train_set.images[bank_idx], views.eval_views, device=dev)
    queries = extract_features(encoder, test_set.images, views.eval_views, device=dev)
    top1 = knn_top1(bank, train_set.labels[bank_idx], queries, test_set.labels,
                    num_classes=len(train_set.class_names), k=k, temperature=temperature)
    result = {"kind": "knn", "source": "random_init" if random_init else "checkpoint", "top1": top1,
              "k": k, "temperature": temperature, "features": features, "normalize": "l2",
              "split": "test", "bank": "train", "bank_size": int(len(bank_idx)),
              "queries": int(len(test_set)), "checkpoint": str(path.name)}
    if record and run_dir is not None:
        record_evaluation(run_dir, result)
    return result
