"""Linear probe (and a cached kNN) on frozen features of a run's checkpoint.

The features come from :func:`backend.inspect.compute_embeddings` (frozen backbone, deterministic
eval views: resize + normalise, no augmentation), so they are computed once and cached in
``<run>/inspect/``. The probe is multinomial logistic regression on standardised features (train
mean/std), fitted full-batch with L-BFGS (strong-Wolfe line search) and an L2 penalty
``weight_decay / 2 * ||W||^2`` on the weights (not the bias): fast and deterministic on a CPU for
the feature banks a workstation holds (50k x 2048 is 400 MB of float32). ``epochs`` is the number
of L-BFGS iterations, each a full pass over the training features (plus line-search passes).

Fine-tuning the backbone is out of scope.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from .errors import DataError
from .inspect.embeddings import compute_embeddings
from .label_subsets import balanced_subset
from .metrics import knn_votes
from .reporter import as_reporter
from .runs import record_evaluation


def _labelled_splits(run_dir, checkpoint, train_limit: int, features: str, device, report, what: str):
    """(train, test) embedding sets of a checkpoint (cached), both labelled or a DataError naming
    ``what``; progress goes to the first 60 % / 35 % of ``report`` for train / test."""
    sets = [compute_embeddings(run_dir, checkpoint=checkpoint, split=split, limit=limit, features=features,
                               device=device, progress=report.sub(lo, hi))
            for split, limit, lo, hi in (("train", train_limit, 0.0, 0.6), ("test", 0, 0.6, 0.95))]
    for es in sets:
        if es.labels is None:
            raise DataError(f"{what} needs labels but the {es.split} split of this run's data is unlabelled "
                            f"(no class folders)")
    return sets


def fit_logistic_regression(x: torch.Tensor, y: torch.Tensor, num_classes: int, *, epochs: int = 100,
                            lr: float = 1.0, weight_decay: float = 5e-4, report=None):
    """(W (F, C), b (C,)) of softmax regression on ``x`` (N, F) / ``y`` (N,) by full-batch L-BFGS."""
    report = as_reporter(report)
    w = torch.zeros(x.shape[1], num_classes, dtype=torch.float32, requires_grad=True)
    b = torch.zeros(num_classes, dtype=torch.float32, requires_grad=True)
    max_eval = int(epochs * 1.25) + 1
    opt = torch.optim.LBFGS([w, b], lr=lr, max_iter=int(epochs), max_eval=max_eval, history_size=20,
                            line_search_fn="strong_wolfe", tolerance_grad=1e-6, tolerance_change=1e-9)
    calls = [0]

    def closure():
        report(calls[0] / max_eval, f"fitting the linear classifier ({calls[0]} passes)")
        calls[0] += 1
        opt.zero_grad()
        loss = F.cross_entropy(x @ w + b, y) + 0.5 * weight_decay * w.pow(2).sum()
        loss.backward()
        return loss

    if epochs > 0:
        opt.step(closure)
    return w.detach(), b.detach()


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(C, C) int64 counts: rows are true classes, columns predicted classes."""
    flat = target.long() * num_classes + pred.long()
    return torch.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def classification_scores(scores: torch.Tensor, target: torch.Tensor, num_classes: int) -> dict:
    """top1, top5 (top-k with k = min(5, classes), as ``top5_k``) and the confusion matrix (list of
    rows) of class ``scores`` (N, C) (logits or votes) against ``target`` (N,)."""
    scores, target = scores.float().cpu(), target.long().cpu()
    pred = scores.argmax(dim=1)
    k5 = min(5, num_classes)
    top5 = (scores.topk(k5, dim=1).indices == target[:, None]).any(dim=1).float().mean().item()
    return {"top1": (pred == target).float().mean().item(), "top5": top5, "top5_k": k5,
            "confusion": confusion_matrix(pred, target, num_classes).tolist()}


def linear_probe(run_dir, *, checkpoint=None, features: str = "backbone", epochs: int = 100,
                 lr: float = 1.0, weight_decay: float = 5e-4, train_limit: int = 0, device: str = "cpu",
                 record: bool = True, progress=None, cancelled=None, label_fraction: float = 1.0,
                 subset_seed: int = 0) -> dict:
    """Top-1/top-5 and the confusion matrix of a linear classifier on frozen features.

    Trained on the train split (``train_limit`` images at most, 0 = all), or with
    ``label_fraction`` < 1 on its class-balanced subset (:func:`backend.label_subsets.balanced_subset`
    with ``subset_seed``; recorded as ``label_fraction``, ``subset_seed``, ``subset_size``), tested
    on the whole test split. The result dict holds the parameters that produced it and, when ``record``, is appended
    to the run's evaluations.jsonl (kind ``linear_probe``). Raises DataError for unlabelled data
    and :class:`backend.errors.Cancelled` when ``cancelled()`` turns true."""
    report = as_reporter(progress, cancelled)
    start = time.perf_counter()
    train, test = _labelled_splits(run_dir, checkpoint, train_limit, features, device, report.sub(0.0, 0.6),
                                   "the linear probe")
    num_classes = len(train.class_names)
    xtr, xte = torch.from_numpy(train.features).float(), torch.from_numpy(test.features).float()
    ytr, yte = torch.from_numpy(train.labels).long(), torch.from_numpy(test.labels).long()
    if label_fraction != 1.0:
        index = torch.from_numpy(balanced_subset(train.labels, label_fraction, subset_seed))
        xtr, ytr = xtr[index], ytr[index]
    mean, std = xtr.mean(dim=0), xtr.std(dim=0, unbiased=False).clamp_min(1e-6)
    xtr, xte = (xtr - mean) / std, (xte - mean) / std
    w, b = fit_logistic_regression(xtr, ytr, num_classes, epochs=epochs, lr=lr, weight_decay=weight_decay,
                                   report=report.sub(0.6, 0.98))
    train_top1 = ((xtr @ w + b).argmax(dim=1) == ytr).float().mean().item()
    result = {"kind": "linear_probe", "source": "checkpoint", **classification_scores(xte @ w + b, yte, num_classes),
              "train_top1": train_top1, "class_names": list(train.class_names), "epochs": int(epochs), "lr": float(lr),
              "weight_decay": float(weight_decay), "optimizer": "lbfgs", "features": features,
              "normalize": "standardize", "split": "test", "bank": "train",
              "label_fraction": float(label_fraction), "subset_seed": int(subset_seed), "subset_size": int(len(ytr)),
              "bank_size": int(len(ytr)), "queries": int(len(test)), "checkpoint": train.checkpoint,
              "seconds": round(time.perf_counter() - start, 3)}
    report(1.0, f"linear probe top-1 {result['top1']:.3f}")
    if record:
        record_evaluation(run_dir, result)
    return result


def knn_probe(run_dir, *, checkpoint=None, k: int = 200, temperature: float = 0.1, features: str = "backbone",
              device: str = "cpu", record: bool = True, progress=None, cancelled=None) -> dict:
    """kNN top-1 like :func:`backend.evaluate.evaluate_knn_checkpoint` (same bank, same result
    keys), but on cached features, so changing ``k`` or ``temperature`` is instant."""
    from .inspect.common import run_config
    from .restore import resolve_checkpoint

    report = as_reporter(progress, cancelled)
    path = resolve_checkpoint(run_dir, checkpoint)
    cfg = run_config(run_dir, path)
    bank, queries = _labelled_splits(run_dir, path, cfg.eval.knn_train_limit, features, device, report, "kNN")
    num_classes = len(bank.class_names)
    votes = knn_votes(torch.from_numpy(queries.features), torch.from_numpy(bank.features),
                      torch.from_numpy(bank.labels), num_classes, k=k, temperature=temperature)
    scores = classification_scores(votes, torch.from_numpy(queries.labels).long(), num_classes)
    top1 = scores["top1"]
    result = {"kind": "knn", "source": "checkpoint", **scores, "class_names": list(bank.class_names),
              "k": int(k), "temperature": float(temperature),
              "features": features, "normalize": "l2", "split": "test", "bank": "train",
              "bank_size": int(len(bank)), "queries": int(len(queries)), "checkpoint": bank.checkpoint}
    report(1.0, f"kNN top-1 {top1:.3f}")
    if record:
        record_evaluation(run_dir, result)
    return result

