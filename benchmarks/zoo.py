"""Train every registered method with the same small budget and print one comparison table.

Each method runs its own preset's method/model settings on the same data subset, backbone,
batch, epochs and optimiser (so rows differ only by method), then the final checkpoint is scored:
kNN top-1 of backbone features (k=20, T=0.1), and alignment, uniformity, embedding_std and
effective rank of the projector on the fixed probe batch (from the last metric events), plus
training img/s. A row whose embedding_std is near 0 has collapsed.

    python benchmarks/zoo.py                                  # CIFAR-10 subset (or synthetic), CPU
    python benchmarks/zoo.py --methods simclr,byol --epochs 5 --train-limit 5000
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backend.config import ExperimentConfig, deep_merge, list_presets, preset_dict  # noqa: E402
from backend.evaluate import evaluate_knn_checkpoint  # noqa: E402
from backend.events import metric_series, read_events  # noqa: E402
from backend.methods import METHODS  # noqa: E402
from backend.runs import create_run  # noqa: E402
from backend.train import run_training  # noqa: E402

CIFAR = ROOT.parent / "shared" / "data" / "cifar10"
KEEP_FROM_PRESET = ("method", "model")  # everything else is shared by all rows


def method_config(name: str, shared: dict) -> ExperimentConfig:
    """The method's own preset (method + head settings) on the shared budget."""
    preset = preset_dict(name) if name in list_presets() else {"method": {"name": name}}
    own = {k: v for k, v in preset.items() if k in KEEP_FROM_PRESET}
    own.setdefault("method", {})["name"] = name
    if "augment" in preset and ("num_local_crops" in preset["augment"]):
        own["augment"] = {k: v for k, v in preset["augment"].items() if "local" in k}
    cfg = deep_merge(shared, own)
    cfg["model"]["backbone"] = shared["model"]["backbone"]
    # Large heads of the ImageNet recipes are scaled down to the small backbone.
    for key in ("projector_hidden_dim", "projector_out_dim"):
        cfg["model"][key] = min(cfg["model"].get(key, shared["model"][key]), shared["model"][key])
    if name in ("dino", "swav"):
        cfg["method"]["out_dim"] = min(cfg["method"].get("out_dim", 4096), 1024)
    return ExperimentConfig.from_dict(cfg)


def last(series: dict, name: str):
    cols = series.get(name)
    return cols["value"][-1] if cols and cols["value"] else float("nan")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", default=",".join(sorted(METHODS)))
    parser.add_argument("--backbone", default="tiny_cnn")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--train-limit", type=int, default=10000)
    parser.add_argument("--test-limit", type=int, default=2000)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--keep", type=Path, help="keep the run directories here")
    args = parser.parse_args(argv)

    source = f"imagefolder:{CIFAR}" if CIFAR.is_dir() else "synthetic"
    shared = {"data": {"source": source, "train_limit": args.train_limit, "test_limit": args.test_limit,
                       "synthetic_train_size": args.train_limit, "synthetic_test_size": args.test_limit},
              "model": {"backbone": args.backbone, "projector_hidden_dim": 512, "projector_out_dim": 128},
              "optim": {"optimizer": "adamw", "lr": 0.004, "weight_decay": 1e-4, "batch_size": args.batch},
              "schedule": {"epochs": args.epochs, "warmup_epochs": 1},
              "eval": {"knn_k": 20, "knn_every_epochs": 0, "metrics_every_steps": 10},
              "runtime": {"device": args.device}}
    workspace = args.keep or Path(tempfile.mkdtemp(prefix="sslwb-zoo-"))
    print(f"data {source} (train {args.train_limit}, test {args.test_limit}), backbone {args.backbone}, "
          f"batch {args.batch}, {args.epochs} epochs, AdamW lr 0.004/256, device {args.device}")
    rows, run_dirs = [], []
    for name in args.methods.split(","):
        cfg = method_config(name, shared)
        run = create_run(workspace, cfg)
        run_dirs.append(run)
        t0 = time.perf_counter()
        code = run_training(run, echo=False)
        wall = time.perf_counter() - t0
        series = metric_series(read_events(run / "events.jsonl"))
        rows.append((name, code, last(series, "knn_top1"), last(series, "alignment"), last(series, "uniformity"),
                     last(series, "embedding_std"), last(series, "effective_rank"),
                     sum(series.get("throughput", {}).get("value", [0])) / max(1, len(series.get("throughput", {}).get("value", [0]))),
                     wall))
        print(f"  {name}: exit {code}, {wall:.0f}s", flush=True)
    print(f"\n| {'method':<13} | kNN top-1 | alignment | uniformity | embedding_std | eff. rank | img/s | wall s |")
    print(f"|{'-' * 15}|-----------|-----------|------------|---------------|-----------|-------|--------|")
    for name, code, knn, align, unif, std, rank, ips, wall in rows:
        flag = " (exit %d)" % code if code else ""
        print(f"| {name + flag:<13} | {knn:9.3f} | {align:9.3f} | {unif:10.3f} | {std:13.4f} | {rank:9.1f} | "
              f"{ips:5.0f} | {wall:6.0f} |")
    if rows:  # reference row: the first method's network at random init, scored the same way
        random_knn = evaluate_knn_checkpoint(run_dirs[0], k=20, temperature=0.1, record=False, random_init=True)["top1"]
        print(f"| {'random init':<13} | {random_knn:9.3f} | {'':9} | {'':10} | {'':13} | {'':9} | {'':5} | {'':6} |")
    if not args.keep:
        shutil.rmtree(workspace, ignore_errors=True)


if __name__ == "__main__":
    main()
