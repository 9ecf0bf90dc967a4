"""Linear probe and cached kNN on frozen features."""

import json

import pytest
import torch

from backend.cli import main
from backend.evaluate import evaluate_knn_checkpoint
from backend.errors import Cancelled
from backend.linear_probe import confusion_matrix, fit_logistic_regression, knn_probe, linear_probe
from backend.runs import read_evaluations

from .inspect_helpers import copy_run


def test_logistic_regression_separates_blobs():
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(4, 16, generator=g) * 3
    y = torch.arange(4).repeat_interleave(50)
    x = centres[y] + torch.randn(200, 16, generator=g)
    w, b = fit_logistic_regression(x, y, 4, epochs=50)
    assert w.shape == (16, 4) and b.shape == (4,)
    assert ((x @ w + b).argmax(dim=1) == y).float().mean() > 0.97


def test_confusion_matrix_counts():
    pred, target = torch.tensor([0, 1, 1, 2, 2, 2]), torch.tensor([0, 1, 2, 2, 2, 0])
    cm = confusion_matrix(pred, target, 3)
    assert cm.tolist() == [[1, 0, 1], [0, 1, 0], [0, 1, 2]]


def test_linear_probe_beats_chance_and_is_recorded(tmp_path):
    run = copy_run("cnn", tmp_path)
    before = len(read_evaluations(run))   # the trainer's own online kNN result
    seen = []
    result = linear_probe(run, progress=lambda f, m: seen.append(f))
    assert result["kind"] == "linear_probe" and result["top1"] > 0.15   # 10 classes: chance is 0.10
    assert result["top5"] >= result["top1"] and result["top5_k"] == 5
    cm = torch.tensor(result["confusion"])
    assert cm.shape == (10, 10) and int(cm.sum()) == 128 == result["queries"]
    assert cm.diagonal().sum().item() == round(result["top1"] * 128)
    for key in ("epochs", "lr", "weight_decay", "features", "normalize", "split", "bank_size"):
        assert key in result
    assert result["bank_size"] == 256 and result["normalize"] == "standardize"
    assert seen == sorted(seen) and seen[-1] == 1.0
    stored = read_evaluations(run)[-1]
    assert stored["kind"] == "linear_probe" and stored["top1"] == result["top1"]
    # features are cached: a second probe with other settings reads them back
    again = linear_probe(run, weight_decay=1e-2, epochs=20, record=False)
    assert again["weight_decay"] == 1e-2 and len(read_evaluations(run)) == before + 1


def test_linear_probe_can_be_cancelled(tmp_path):
    run = copy_run("cnn", tmp_path)
    calls = []

    def cancelled():
        calls.append(1)
        return len(calls) > 3

    before = read_evaluations(run)
    with pytest.raises(Cancelled):
        linear_probe(run, cancelled=cancelled)
    assert read_evaluations(run) == before


def test_cached_knn_matches_evaluate(tmp_path):
    run = copy_run("cnn", tmp_path)
    fast = knn_probe(run, k=10, temperature=0.1, record=False)
    slow = evaluate_knn_checkpoint(run, k=10, temperature=0.1, record=False)
    assert {key: fast[key] for key in slow} == slow
    # The extras: the confusion matrix counts every query once, its diagonal is top-1, top-5 >= top-1.
    cm = torch.tensor(fast["confusion"])
    assert cm.shape == (len(fast["class_names"]),) * 2 and cm.sum() == fast["queries"]
    assert cm.diagonal().sum().item() / fast["queries"] == pytest.approx(fast["top1"])
    assert fast["top1"] <= fast["top5"] <= 1.0 and fast["top5_k"] == min(5, len(fast["class_names"]))


def test_cli_linear_probe(tmp_path, capsys):
    run = copy_run("cnn", tmp_path)
    before = len(read_evaluations(run))
    assert main(["inspect", "--run-dir", str(run), "linear-probe", "--epochs", "30"]) == 0
    out = capsys.readouterr().out
    assert "linear probe top-1" in out and "top-5" in out
    assert main(["inspect", "--run-dir", str(run), "linear-probe", "--epochs", "30", "--json", "--no-record"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["epochs"] == 30 and len(read_evaluations(run)) == before + 1


def test_linear_probe_on_a_label_fraction_is_recorded(tmp_path, capsys):
    import numpy as np

    from backend.inspect import compute_embeddings
    from backend.label_subsets import balanced_subset

    run = copy_run("cnn", tmp_path)
    assert main(["inspect", "--run-dir", str(run), "linear-probe", "--epochs", "20", "--label-fraction", "0.1",
                 "--subset-seed", "3"]) == 0
    assert "0.1 of the labels, seed 3" in capsys.readouterr().out
    rec = read_evaluations(run)[-1]
    train = compute_embeddings(run, split="train")
    expected = balanced_subset(train.labels, 0.1, 3)
    assert rec["kind"] == "linear_probe" and rec["label_fraction"] == 0.1 and rec["subset_seed"] == 3
    assert rec["subset_size"] == rec["bank_size"] == len(expected) < len(train)
    assert len(set(np.bincount(train.labels[expected]).tolist())) == 1  # balanced
    full = linear_probe(run, epochs=20, record=False)
    assert full["label_fraction"] == 1.0 and full["subset_size"] == len(train)
