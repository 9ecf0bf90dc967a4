"""Time to accuracy: kNN top-1 after each epoch against wall-clock, for one training run.

Runs the real trainer (same code path as ``sslwb train``) and prints a table of epoch,
wall-clock seconds since start, epoch time, img/s and kNN top-1 (k=200, T=0.1, backbone
features, bank = train split, queries = test split).

    python benchmarks/time_to_accuracy.py --device cuda --epochs 200               # SimCLR ResNet-18, CIFAR-10
    python benchmarks/time_to_accuracy.py --backbone tiny_cnn --train-limit 10000 --epochs 5   # CPU
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backend.config import ExperimentConfig, deep_merge, preset_dict  # noqa: E402
from backend.events import read_events  # noqa: E402
from backend.runs import create_run  # noqa: E402
from backend.train import run_training  # noqa: E402

CIFAR = ROOT.parent / "shared" / "data" / "cifar10"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="simclr")
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--train-limit", type=int, default=0)
    parser.add_argument("--test-limit", type=int, default=0)
    parser.add_argument("--knn-every", type=int, default=1)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--workspace", type=Path)
    args = parser.parse_args(argv)

    source = f"imagefolder:{CIFAR}" if CIFAR.is_dir() else "cifar10"
    overrides = {"data": {"source": source, "train_limit": args.train_limit, "test_limit": args.test_limit},
                 "model": {"backbone": args.backbone}, "optim": {"batch_size": args.batch},
                 "schedule": {"epochs": args.epochs},
                 "eval": {"knn_every_epochs": args.knn_every, "knn_train_limit": 0},
                 "runtime": {"device": args.device, "compile": args.compile}}
    cfg = ExperimentConfig.from_dict(deep_merge(preset_dict(args.preset), overrides))
    run = create_run(args.workspace or Path(tempfile.mkdtemp(prefix="sslwb-tta-")), cfg)
    print(f"run {run}: {args.preset} / {args.backbone}, batch {args.batch}, {args.epochs} epochs, {source}")
    code = run_training(run, echo=False)
    events = read_events(run / "events.jsonl")
    start = next(e["time"] for e in events if e.get("state") == "running")
    epoch_times = {e["epoch"]: e["value"] for e in events if e.get("name") == "epoch_time"}
    throughput: dict[int, list] = {}
    for e in events:
        if e.get("name") == "throughput":
            throughput.setdefault(e["epoch"], []).append(e["value"])
    print(f"\n| epoch | wall s | epoch s | img/s | kNN top-1 |\n|------:|-------:|--------:|------:|----------:|")
    for e in events:
        if e.get("name") == "knn_top1":
            ep = e["epoch"]
            ips = sum(throughput.get(ep, [0])) / max(1, len(throughput.get(ep, [0])))
            print(f"| {ep + 1:5d} | {e['time'] - start:6.0f} | {epoch_times.get(ep, float('nan')):7.1f} | "
                  f"{ips:5.0f} | {e['value']:9.4f} |")
    print(f"\nexit code {code}")


if __name__ == "__main__":
    main()
