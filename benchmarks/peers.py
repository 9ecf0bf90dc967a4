"""Peer table: the workbench's trainer vs the lightly package's own pipeline, same budget, same kNN.

For each method both sides train the same backbone module (``--backbone``) for the same epochs and
batch on the same CIFAR-10 subset, with the same head sizes (the method's preset, capped at
--head-dim), the same optimiser (the preset's, built by backend.optim.build_optimizer) and the same
learning-rate schedule (linear warm-up, half-cosine):

* ours    - backend.train.run_training on a run made from the method's preset plus the budget.
* lightly - lightly's example pipeline for the method: its transforms on PIL images in a
            DataLoader, its heads, loss and momentum update (benchmarks/peer_lightly.py for
            SimCLR/BYOL/DINO, benchmarks/peer_lightly_more.py for MoCo v2, SimSiam, Barlow
            Twins, VICReg and SwAV), set as lightly's CIFAR-10 benchmark sets it where a preset
            cites that benchmark (SimCLR's jitter strength 0.5, DINO's head batch norm and
            solarisation, MoCo v2's symmetric loss), so both sides train the same recipe.
            lightly is a peer, installed only for this benchmark:

    pip install --no-deps --target /tmp/lightly-peer lightly==1.6.0 lightning-utilities
    PYTHONPATH=/tmp/lightly-peer python benchmarks/peers.py --quick
    PYTHONPATH=/tmp/lightly-peer python benchmarks/peers.py --epochs 10 --train-limit 5000 --test-limit 1000
    PYTHONPATH=/tmp/lightly-peer python benchmarks/peers.py --device cuda --backbone resnet18 --epochs 50

One evaluator scores both backbones: frozen features of the workbench's eval transform
(backend.evaluate.extract_features), weighted kNN top-1 with k=200, T=0.1 (knn_top1), bank = the
training subset, queries = the test subset. img/s counts source images per second of training
(ours: the mean of the engine's throughput events; lightly: after two warm-up steps); wall time is
the whole training of each side (ours includes the engine's start-up, data loading and checkpoints).
"""

from __future__ import annotations

import argparse
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from backend.config import ExperimentConfig, deep_merge, preset_dict  # noqa: E402
from backend.data.augment import ViewGenerator  # noqa: E402
from backend.data.sources import load_dataset  # noqa: E402
from backend.devices import autocast_dtype, resolve_device  # noqa: E402
from backend.evaluate import extract_features, knn_top1  # noqa: E402
from backend.events import metric_series, read_events  # noqa: E402
from backend.optim import build_optimizer, lr_at, peak_lr, set_lr  # noqa: E402
from backend.restore import restore_method  # noqa: E402
from backend.runs import create_run  # noqa: E402
from backend.train import run_training  # noqa: E402

import peer_lightly  # noqa: E402
import peer_lightly_more  # noqa: E402

METHOD_NAMES = peer_lightly.METHOD_NAMES + peer_lightly_more.METHOD_NAMES
KNN_K, KNN_T = 200, 0.1
WARMUP_STEPS = 2  # lightly's img/s is timed after these (the workbench's throughput events skip start-up too)
QUICK = {"methods": "simclr,byol", "epochs": 1, "train_limit": 512, "test_limit": 256, "batch": 128,
         "head_dim": 256}


def find_cifar() -> Path | None:
    """The shared CIFAR-10 ImageFolder (``shared/data/cifar10`` next to this checkout or above it)."""
    for parent in ROOT.parents:
        candidate = parent / "shared" / "data" / "cifar10"
        if candidate.is_dir():
            return candidate
    return None


def budget_config(name: str, args, source: str, seed: int = 0) -> ExperimentConfig:
    """The method's preset with the budget's overrides (data, backbone, batch, epochs, head caps)."""
    cfg = preset_dict(name)
    for key in ("projector_hidden_dim", "projector_out_dim", "predictor_hidden_dim"):
        if key in cfg.get("model", {}):
            cfg["model"][key] = min(cfg["model"][key], args.head_dim)
    if "out_dim" in cfg.get("method", {}):
        cfg["method"]["out_dim"] = min(cfg["method"]["out_dim"], args.head_dim)
    warmup = min(cfg.get("schedule", {}).get("warmup_epochs", 0), args.epochs // 10)
    shared = {"data": {"source": source, "train_limit": args.train_limit, "test_limit": args.test_limit,
                       "synthetic_train_size": args.train_limit, "synthetic_test_size": args.test_limit},
              "model": {"backbone": args.backbone},
              "optim": {"batch_size": args.batch},
              "schedule": {"epochs": args.epochs, "warmup_epochs": warmup},
              "eval": {"knn_every_epochs": 0},
              "runtime": {"device": args.device, "seed": seed}}
    return ExperimentConfig.from_dict(deep_merge(cfg, shared))


def train_ours(workspace: Path, cfg: ExperimentConfig, device) -> dict:
    """Train with the workbench's engine; its backbone, mean img/s, wall seconds and exit code."""
    run = create_run(workspace, cfg)
    start = time.perf_counter()
    code = run_training(run, echo=False)
    wall = time.perf_counter() - start
    speeds = metric_series(read_events(run / "events.jsonl")).get("throughput", {}).get("value", [])
    backbone = restore_method(run, device=device)[0].backbone if code == 0 else None
    return {"backbone": backbone, "ips": sum(speeds) / len(speeds) if speeds else float("nan"), "wall": wall,
            "note": "" if code == 0 else f"exit {code}"}


def lightly_pipeline(name: str, cfg: ExperimentConfig):
    """lightly's (transform, model, EMA copy, loss, after-step hook) for ``name``."""
    if name in peer_lightly.METHOD_NAMES:
        return peer_lightly.lightly_setup(name, cfg)
    return peer_lightly_more.setup(name, cfg)


def momentum_update(name: str, cfg: ExperimentConfig, model, ema_copy):
    """BYOL's and DINO's EMA update as in lightly's examples: cosine_schedule from the preset's
    base momentum to its final one over training (peer_lightly's hook keeps the base value)."""
    from lightly.models.utils import update_momentum
    from lightly.utils.scheduler import cosine_schedule

    base, final = cfg.method.momentum, cfg.method.momentum_final
    pairs = ([(model["backbone"], ema_copy["backbone"]), (model["head"], ema_copy["head"])] if name == "byol"
             else [(model, ema_copy)])

    def after_step(progress):
        m = cosine_schedule(round(progress * 10000), 10000, base, final)
        for online, target in pairs:
            update_momentum(online, target, m)
    return after_step


class OurViews:
    """The ``--lightly-views ours`` ablation's loader: batches of the workbench's own views
    (backend.data.augment on uint8 images, the preset's per-view pipelines) in lightly's place, so
    a kNN gap that closes with it is the transforms' doing, not the model's or the loss's."""

    def __init__(self, images: torch.Tensor, cfg: ExperimentConfig, device):
        self.images, self.batch, self.device = images, cfg.optim.batch_size, device
        self.views = ViewGenerator(cfg.augment, cfg.data.image_size)
        self.generator = torch.Generator().manual_seed(cfg.runtime.seed)

    def __len__(self):
        return len(self.images) // self.batch          # drop_last, as lightly's DataLoader

    def __iter__(self):
        order = torch.randperm(len(self.images), generator=self.generator)
        for i in range(len(self)):
            batch = self.images[order[i * self.batch:(i + 1) * self.batch]].to(self.device)
            yield self.views(batch, generator=self.generator)[:2]


def train_lightly(name: str, cfg: ExperimentConfig, images: torch.Tensor, device, workers: int,
                  views: str = "lightly") -> dict:
    """Train lightly's pipeline with the workbench's optimiser and lr schedule for cfg's epochs;
    ``views="ours"`` feeds it the workbench's views instead of its own transforms (an ablation)."""
    torch.manual_seed(cfg.runtime.seed)
    transform, model, ema_copy, loss_fn, after_step = lightly_pipeline(name, cfg)
    if name in ("byol", "dino"):
        after_step = momentum_update(name, cfg, model, ema_copy)
    cnn = not cfg.model.backbone.startswith("vit")
    fmt = torch.channels_last if cnn and device.type == "cuda" else torch.preserve_format
    for module in (model, ema_copy):
        if module is not None:
            module.to(device, memory_format=fmt)
    loader = OurViews(images, cfg, device) if views == "ours" else torch.utils.data.DataLoader(
        peer_lightly.PilViews(images, transform), batch_size=cfg.optim.batch_size, shuffle=True,
        num_workers=workers, drop_last=True, pin_memory=device.type == "cuda", persistent_workers=workers > 0)
    total = cfg.schedule.epochs * len(loader)
    if total == 0:
        raise ValueError(f"batch {cfg.optim.batch_size} exceeds the {len(images)} training images")
    warmup = cfg.schedule.warmup_epochs * len(loader)
    opt = build_optimizer(model, cfg, fused=device.type == "cuda")
    amp = autocast_dtype("auto", device)
    step, note, start, timed_from = 0, "", time.perf_counter(), None
    model.train()
    for _ in range(cfg.schedule.epochs):
        for views in loader:
            if step == WARMUP_STEPS:  # img/s leaves out the loader's start and the first steps
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                timed_from = time.perf_counter()
            views = [v.to(device, non_blocking=True, memory_format=fmt) for v in views]
            set_lr(opt, lr_at(step, total, warmup, peak_lr(cfg)))
            with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
                loss = loss_fn(views[0], views[1], step / total)
            loss.backward()
            if name == "dino":  # lightly's DINO example: last layer frozen for the first epoch(s)
                model["head"].cancel_last_layer_gradients(step // len(loader))
            opt.step()
            opt.zero_grad(set_to_none=True)
            step += 1
            after_step(step / total)
        if not note and not math.isfinite(loss.item()):  # one host sync per epoch
            note = f"non-finite loss in epoch {step // len(loader)}"
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    end = time.perf_counter()
    timed_steps, timed_span = (step - WARMUP_STEPS, end - timed_from) if timed_from else (step, end - start)
    return {"backbone": nn.Sequential(model["backbone"], nn.Flatten(1)),
            "ips": timed_steps * cfg.optim.batch_size / timed_span, "wall": end - start, "note": note}


def network_floor(cfg: ExperimentConfig, images: torch.Tensor, device, steps: int = 8) -> float:
    """Milliseconds per source image of the workbench's method step alone - forward, backward,
    optimiser step and momentum update on one batch of views made once - with no data path: the
    network cost both sides pay, so lightly's ms/img divided by it bounds the img/s ratio any data
    path could reach for this method on this machine."""
    from backend.methods import METHODS

    torch.manual_seed(cfg.runtime.seed)
    method = METHODS[cfg.method.name](cfg).to(device).train()
    opt = build_optimizer(method, cfg, fused=device.type == "cuda")
    amp = autocast_dtype("auto", device)
    batch = images[:cfg.optim.batch_size]
    views = [v.to(device) for v in ViewGenerator(cfg.augment, cfg.data.image_size)(
        batch, torch.Generator().manual_seed(cfg.runtime.seed))]
    start = None
    for step in range(WARMUP_STEPS + steps):
        if step == WARMUP_STEPS:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
        progress = step / (WARMUP_STEPS + steps)
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            loss = method(views, None, progress).loss
        loss.backward()
        method.before_optimizer_step(progress)
        opt.step()
        opt.zero_grad(set_to_none=True)
        method.after_optimizer_step(progress)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return 1000.0 * (time.perf_counter() - start) / (steps * len(batch))


def print_floors(floors: dict[str, float], rows) -> None:
    """Each method's network-only ms/img beside both sides' measured ms/img (medians over the
    seeds in ``rows``) and the img/s ratio ceiling lightly's ms/img / network ms/img."""
    print(f"\n| {'method':<12} | network ms/img | ours ms/img | lightly ms/img | ours/lightly | ceiling |")
    print(f"|{'-' * 14}|----------------|-------------|----------------|--------------|---------|")
    for name, floor in floors.items():
        mine = [(ours, peer) for method, _, ours, peer in rows if method == name]
        ours_ms, peer_ms = median_ms(mine)
        print(f"| {name:<12} | {floor:14.2f} | {ours_ms:11.2f} | {peer_ms:14.2f} | {peer_ms / ours_ms:11.2f}x | "
              f"{peer_ms / floor:6.2f}x |")


def knn_score(encoder, train_set, test_set, views, device) -> float:
    """kNN top-1 (k=200, T=0.1) of ``encoder``'s frozen features of the eval transform."""
    if encoder is None:
        return float("nan")
    bank = extract_features(encoder, train_set.images, views.eval_views, device=device)
    queries = extract_features(encoder, test_set.images, views.eval_views, device=device)
    return knn_top1(bank, train_set.labels, queries, test_set.labels, num_classes=len(train_set.class_names),
                    k=KNN_K, temperature=KNN_T)


def parse_args(argv):
    """Command-line options; --quick fills in the smoke budget for options left at their defaults."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", default=None, help=f"comma list (default all: {','.join(METHOD_NAMES)})")
    parser.add_argument("--epochs", type=int, default=None, help="default 10")
    parser.add_argument("--train-limit", type=int, default=None, help="default 5000")
    parser.add_argument("--test-limit", type=int, default=None, help="default 1000")
    parser.add_argument("--batch", type=int, default=None, help="default 256")
    parser.add_argument("--head-dim", type=int, default=None, help="cap on head/prototype sizes (default 2048)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--backbone", default=None, help="default resnet18 on a GPU, tiny_cnn otherwise")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers of the lightly side")
    parser.add_argument("--data", type=Path, default=None, help="CIFAR-10 ImageFolder (default shared/data/cifar10)")
    parser.add_argument("--quick", action="store_true", help="smoke budget: simclr,byol, 1 epoch, 512 images")
    parser.add_argument("--keep", type=Path, help="keep the workbench's run directories here")
    parser.add_argument("--floor-only", action="store_true", help="only each method's network ms/img (its "
                        "step on fixed views, no data path, no lightly run)")
    parser.add_argument("--lightly-views", choices=("lightly", "ours"), default="lightly",
                        help="the lightly side's views: its own transforms (default) or, as an ablation, "
                        "the workbench's views of the preset (then only model, loss and updates differ)")
    parser.add_argument("--seeds", default="0", help="comma list of runtime seeds; with more than one, a "
                        "mean/standard-error table follows the per-seed one (default 0)")
    args = parser.parse_args(argv)
    defaults = {"methods": ",".join(METHOD_NAMES), "epochs": 10, "train_limit": 5000, "test_limit": 1000,
                "batch": 256, "head_dim": 2048}
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, QUICK[key] if args.quick else value)
    try:
        args.seeds = [int(seed) for seed in args.seeds.split(",")]
    except ValueError:
        parser.error(f"--seeds takes a comma list of integers, got {args.seeds!r}")
    unknown = [m for m in args.methods.split(",") if m not in METHOD_NAMES]
    if unknown:
        parser.error(f"no lightly peer for {', '.join(unknown)}; choose from {', '.join(METHOD_NAMES)}")
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    try:
        import lightly
    except ImportError:
        sys.exit("lightly is not importable: install it for this benchmark only (see this file's docstring)")
    device = resolve_device(args.device)
    args.device = str(device)
    args.backbone = args.backbone or ("resnet18" if device.type == "cuda" else "tiny_cnn")
    data = args.data or find_cifar()
    source = f"imagefolder:{data}" if data is not None and Path(data).is_dir() else "synthetic"
    print(f"device {device}, data {source} (train {args.train_limit}, test {args.test_limit}), backbone "
          f"{args.backbone}, batch {args.batch}, {args.epochs} epochs, heads <= {args.head_dim}, "
          f"kNN k={KNN_K} T={KNN_T}, lightly {lightly.__version__}, lightly's views: {args.lightly_views}", flush=True)
    if args.floor_only:
        for name in args.methods.split(","):
            cfg = budget_config(name, args, source, args.seeds[0])
            ms = network_floor(cfg, load_dataset(cfg.data, "train", seed=cfg.runtime.seed).images, device)
            print(f"| {name:<12} | network {ms:.2f} ms/img ({1000 / ms:.0f} img/s) |", flush=True)
        return
    workspace = args.keep or Path(tempfile.mkdtemp(prefix="sslwb-peers-"))
    rows, floors = [], {}
    try:
        for seed in args.seeds:
            for name in args.methods.split(","):
                cfg = budget_config(name, args, source, seed)
                train_set = load_dataset(cfg.data, "train", seed=cfg.runtime.seed)
                test_set = load_dataset(cfg.data, "test", seed=cfg.runtime.seed)
                views = ViewGenerator(cfg.augment, cfg.data.image_size)
                ours = train_ours(workspace, cfg, device)
                ours["knn"] = knn_score(ours["backbone"], train_set, test_set, views, device)
                peer = train_lightly(name, cfg, train_set.images, device, args.workers, args.lightly_views)
                peer["knn"] = knn_score(peer["backbone"], train_set, test_set, views, device)
                rows.append((name, seed, ours, peer))
                if seed == args.seeds[0]:
                    floors[name] = network_floor(cfg, train_set.images, device)
                print(f"  {name} seed {seed}: ours kNN {ours['knn']:.3f} ({ours['ips']:.0f} img/s, "
                      f"{ours['wall']:.0f}s) {ours['note']}, lightly kNN {peer['knn']:.3f} ({peer['ips']:.0f} img/s, "
                      f"{peer['wall']:.0f}s) {peer['note']}", flush=True)  # a partial table survives an interrupted run
    finally:
        if not args.keep:
            shutil.rmtree(workspace, ignore_errors=True)
    print_table(rows)
    if len(args.seeds) > 1:
        print_seed_summary(rows)
    print_floors(floors, rows)


def print_table(rows) -> None:
    """The peer table in Markdown, one row per method and seed."""
    print(f"\n| {'method':<12} | seed | ours kNN | lightly kNN | diff   | ours img/s | lightly img/s | ratio | "
          f"ours wall s | lightly wall s | notes |")
    print(f"|{'-' * 14}|------|----------|-------------|--------|------------|---------------|-------|"
          f"-------------|----------------|-------|")
    for name, seed, ours, peer in rows:
        notes = "; ".join(f"{side}: {r['note']}" for side, r in (("ours", ours), ("lightly", peer)) if r["note"])
        print(f"| {name:<12} | {seed:4d} | {ours['knn']:8.3f} | {peer['knn']:11.3f} | {ours['knn'] - peer['knn']:+6.3f} | "
              f"{ours['ips']:10.0f} | {peer['ips']:13.0f} | {ours['ips'] / peer['ips']:4.2f}x | "
              f"{ours['wall']:11.0f} | {peer['wall']:14.0f} | {notes} |")



def mean_and_error(values: list[float]) -> tuple[float, float]:
    """Mean and standard error of the mean (nan error for a single value)."""
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, float("nan")
    variance = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
    return mean, math.sqrt(variance / len(values))


def median(values: list[float]) -> float:
    """The median of a non-empty list."""
    ordered, half = sorted(values), len(values) // 2
    return ordered[half] if len(ordered) % 2 else (ordered[half - 1] + ordered[half]) / 2


def median_ms(pairs) -> tuple[float, float]:
    """Median milliseconds of training per image of (ours, lightly) over (ours, lightly) results."""
    return tuple(median([1000.0 / side["ips"] for side in sides]) for sides in zip(*pairs))


def print_seed_summary(rows) -> None:
    """Per method over its seeds: mean kNN of each side, the paired difference's mean and standard
    error, the median img/s ratio (the median resists one noisy neighbour on a shared machine) and
    the median milliseconds of training per image of each side: their difference is what the
    workbench's data path saves per image, the rest is the network both sides run."""
    print(f"\n| {'method':<12} | seeds | ours kNN      | lightly kNN   | diff (mean +- s.e.) | median img/s ratio | "
          f"ms/img ours | ms/img lightly |")
    print(f"|{'-' * 14}|-------|---------------|---------------|---------------------|--------------------|"
          f"-------------|----------------|")
    for name in dict.fromkeys(row[0] for row in rows):
        mine = [(ours, peer) for method, _, ours, peer in rows if method == name]
        ours_mean, ours_err = mean_and_error([o["knn"] for o, _ in mine])
        peer_mean, peer_err = mean_and_error([p["knn"] for _, p in mine])
        diff_mean, diff_err = mean_and_error([o["knn"] - p["knn"] for o, p in mine])
        ratio = median([o["ips"] / p["ips"] for o, p in mine])
        ours_ms, peer_ms = median_ms(mine)
        print(f"| {name:<12} | {len(mine):5d} | {ours_mean:.3f} +- {ours_err:.3f} | {peer_mean:.3f} +- {peer_err:.3f} | "
              f"{diff_mean:+.3f} +- {diff_err:.3f}      | {ratio:17.2f}x | {ours_ms:11.2f} | {peer_ms:14.2f} |")


if __name__ == "__main__":
    main()
