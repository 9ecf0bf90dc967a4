"""Train every registered method with the same small budget: one table per method, one per family.

The methods come from the registry (backend.methods.method_specs(); ``finetune`` is left out, it
needs a checkpoint), so a method added to the registry joins the table by itself. Each runs its own
preset's method/model settings on the same data subset, backbone, batch, epochs and optimiser (so
rows differ only by method). A method whose backbone families exclude --backbone (e.g. a ViT-only
masked-modelling method on tiny_cnn) runs with that family's small backbone (vit_tiny / tiny_cnn)
and is marked ``*``. The final checkpoint is scored by kNN top-1 of backbone features (k=20,
T=0.1), a linear probe on frozen backbone features (backend.linear_probe, L-BFGS, --probe-epochs),
and alignment, uniformity, embedding_std and effective rank of the projector on the fixed probe
batch (from the last metric events), plus training img/s. A row whose embedding_std is near 0 has
collapsed; the run's last collapse warning (the engine's monitor), a non-finite final loss, a failed
run or probe are listed as problems under the tables. The family summary gives the best and mean kNN / probe of each family - the lecture's
"pretext tasks vs contrastive vs distillation vs masked modelling" at equal budget.

    python benchmarks/zoo.py                                  # CIFAR-10 subset (or synthetic), CPU
    python benchmarks/zoo.py --methods simclr,byol --epochs 5 --train-limit 5000
    python benchmarks/zoo.py --families pretext,contrastive,distillation,"masked modelling"
    python benchmarks/zoo.py --epochs 1 --train-limit 1000 --test-limit 500   # smoke check of every method
"""

from __future__ import annotations

import argparse
import math
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
from backend.linear_probe import linear_probe  # noqa: E402
from backend.methods import method_specs  # noqa: E402
from backend.checkpoint import save_checkpoint  # noqa: E402
from backend.methods.spec import FAMILIES  # noqa: E402
from backend.restore import restore_method  # noqa: E402
from backend.models.backbones import backbone_family  # noqa: E402
from backend.runs import create_run  # noqa: E402
from backend.train import run_training  # noqa: E402

KEEP_FROM_PRESET = ("method", "model")  # everything else is shared by all rows
NEEDS_CHECKPOINT = ("finetune",)
SMALL_BACKBONE = {"cnn": "tiny_cnn", "vit": "vit_tiny"}


def find_cifar() -> Path | None:
    """The shared CIFAR-10 ImageFolder (``shared/data/cifar10`` next to this checkout or above it)."""
    for parent in ROOT.parents:
        candidate = parent / "shared" / "data" / "cifar10"
        if candidate.is_dir():
            return candidate
    return None


def default_methods() -> list[str]:
    """Every registered method except those that need a checkpoint to start from."""
    return [name for name in sorted(method_specs()) if name not in NEEDS_CHECKPOINT]


def backbone_for(name: str, wanted: str) -> tuple[str, bool]:
    """(backbone the method trains, whether it differs from ``wanted``): ``wanted`` when the
    method's backbone families include its family, else the small backbone of its first family."""
    families = method_specs()[name].backbones
    if backbone_family(wanted) in families:
        return wanted, False
    return SMALL_BACKBONE[families[0]], True


def method_config(name: str, shared: dict, backbone: str) -> ExperimentConfig:
    """The method's own preset (method + head settings) on the shared budget and ``backbone``."""
    preset = preset_dict(name) if name in list_presets() else {"method": {"name": name}}
    own = {k: v for k, v in preset.items() if k in KEEP_FROM_PRESET}
    own.setdefault("method", {})["name"] = name
    if "augment" in preset and ("num_local_crops" in preset["augment"]):
        own["augment"] = {k: v for k, v in preset["augment"].items() if "local" in k}
    cfg = deep_merge(shared, own)
    cfg["model"]["backbone"] = backbone
    # Large heads of the ImageNet recipes are scaled down to the small backbone.
    for key in ("projector_hidden_dim", "projector_out_dim"):
        cfg["model"][key] = min(cfg["model"].get(key, shared["model"][key]), shared["model"][key])
    if name in ("dino", "swav"):
        cfg["method"]["out_dim"] = min(cfg["method"].get("out_dim", 4096), 1024)
    return ExperimentConfig.from_dict(cfg)


def last(series: dict, name: str):
    """The last value of metric ``name`` (nan when it was never logged)."""
    cols = series.get(name)
    return cols["value"][-1] if cols and cols["value"] else float("nan")


def mean(values) -> float:
    """Mean of the finite values (nan when there are none)."""
    finite = [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    return sum(finite) / len(finite) if finite else float("nan")


def probe(run: Path, args) -> tuple[float, str]:
    """(linear-probe top-1 of the final checkpoint, error text or '')."""
    try:
        result = linear_probe(run, epochs=args.probe_epochs, train_limit=args.train_limit, device=args.device,
                              record=False)
        return result["top1"], ""
    except Exception as exc:  # a broken method must not stop the table; its row says why
        return float("nan"), f"probe: {type(exc).__name__}: {exc}"


def random_init_probe(run: Path, args) -> float:
    """Linear-probe top-1 of ``run``'s network at random init (the run's seed, no weights loaded),
    probed exactly as the trained rows: its state is saved as ``checkpoints/random-init.pt``."""
    method, cfg, _ = restore_method(run, random_init=True)
    path = save_checkpoint({"model": method.state_dict(), "config": cfg.to_dict()},
                           run / "checkpoints" / "random-init.pt")
    return linear_probe(run, checkpoint=path, epochs=args.probe_epochs, train_limit=args.train_limit,
                        device=args.device, record=False)["top1"]


def train_row(name: str, shared: dict, workspace: Path, args) -> dict:
    """Train one method and score its final checkpoint; the table row."""
    spec = method_specs()[name]
    backbone, swapped = backbone_for(name, args.backbone)
    run = create_run(workspace, method_config(name, shared, backbone))
    t0 = time.perf_counter()
    code = run_training(run, echo=False)
    wall = time.perf_counter() - t0
    events = read_events(run / "events.jsonl")
    series = metric_series(events)
    speeds = series.get("throughput", {}).get("value", [])
    row = {"name": name, "family": spec.family, "backbone": backbone, "swapped": swapped, "code": code,
           "knn": last(series, "knn_top1"), "align": last(series, "alignment"), "unif": last(series, "uniformity"),
           "std": last(series, "embedding_std"), "rank": last(series, "effective_rank"),
           "ips": mean(speeds), "wall": wall, "run": run, "error": "", "probe": float("nan")}
    if code == 0:
        row["probe"], row["error"] = probe(run, args)
        loss = last(series, "loss")
        if not math.isfinite(loss):
            row["error"] = "; ".join(filter(None, (f"non-finite final loss {loss}", row["error"])))
        else:  # the engine's collapse monitor logs a warning at the onset and a note when it clears
            notes = [e for e in events if e.get("warning") in ("collapse", "collapse_cleared")]
            if notes and notes[-1]["warning"] == "collapse":
                row["error"] = "; ".join(filter(None, (notes[-1].get("message", "collapse"), row["error"])))
    else:
        errors = [e.get("message", "") for e in events if e.get("type") in ("error", "failed")]
        row["error"] = f"exit {code}: {errors[-1] if errors else 'see events.jsonl'}"
    return row


def print_rows(rows: list[dict]) -> None:
    """The per-method table (Markdown)."""
    print(f"\n| {'method':<18} | {'family':<20} | kNN top-1 | probe top-1 | alignment | uniformity | "
          f"embedding_std | eff. rank | img/s | wall s |")
    print(f"|{'-' * 20}|{'-' * 22}|-----------|-------------|-----------|------------|---------------|"
          f"-----------|-------|--------|")
    for r in rows:
        label = r["name"] + (f" ({r['backbone']}*)" if r["swapped"] else "") + (f" (exit {r['code']})"
                                                                               if r["code"] else "")
        print(f"| {label:<18} | {r['family']:<20} | {r['knn']:9.3f} | {r['probe']:11.3f} | {r['align']:9.3f} | "
              f"{r['unif']:10.3f} | {r['std']:13.4f} | {r['rank']:9.1f} | {r['ips']:5.0f} | {r['wall']:6.0f} |")


def print_families(rows: list[dict]) -> None:
    """Best and mean kNN / probe per family, in the registry's family order."""
    print(f"\n| {'family':<20} | methods | best kNN (method)        | mean kNN | best probe (method)      | "
          f"mean probe |")
    print(f"|{'-' * 22}|---------|--------------------------|----------|--------------------------|------------|")
    for family in [f for f in FAMILIES if any(r["family"] == f for r in rows)]:
        group = [r for r in rows if r["family"] == family]
        cells = []
        for key in ("knn", "probe"):
            scored = [r for r in group if math.isfinite(r[key])]
            best = max(scored, key=lambda r: r[key]) if scored else None
            cells.append(f"{best[key]:.3f} ({best['name']})" if best else "n/a")
            cells.append(mean(r[key] for r in group))
        print(f"| {family:<20} | {len(group):7d} | {cells[0]:<24} | {cells[1]:8.3f} | {cells[2]:<24} | "
              f"{cells[3]:10.3f} |")


def parse_args(argv):
    """Command-line options, with --methods / --families checked against the registry."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", default=None, help="comma list (default: every registered method but "
                        + ", ".join(NEEDS_CHECKPOINT) + ")")
    parser.add_argument("--families", default=None, help=f"comma list of families to keep ({', '.join(FAMILIES)})")
    parser.add_argument("--backbone", default="tiny_cnn")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--train-limit", type=int, default=10000)
    parser.add_argument("--test-limit", type=int, default=2000)
    parser.add_argument("--probe-epochs", type=int, default=30, help="L-BFGS iterations of the linear probe")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--data", type=Path, default=None, help="CIFAR-10 ImageFolder (default shared/data/cifar10)")
    parser.add_argument("--keep", type=Path, help="keep the run directories here")
    args = parser.parse_args(argv)
    specs = method_specs()
    names = args.methods.split(",") if args.methods else default_methods()
    unknown = [n for n in names if n not in specs]
    if unknown:
        parser.error(f"unknown method(s) {', '.join(unknown)}; registered: {', '.join(sorted(specs))}")
    if args.families:
        families = [f.strip() for f in args.families.split(",")]
        bad = [f for f in families if f not in FAMILIES]
        if bad:
            parser.error(f"unknown famil(ies) {', '.join(bad)}; choose from {', '.join(FAMILIES)}")
        names = [n for n in names if specs[n].family in families]
        if not names:
            parser.error(f"no registered method is in {', '.join(families)}")
    args.methods = names
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    data = args.data or find_cifar()
    source = f"imagefolder:{data}" if data is not None and Path(data).is_dir() else "synthetic"
    shared = {"data": {"source": source, "train_limit": args.train_limit, "test_limit": args.test_limit,
                       "synthetic_train_size": args.train_limit, "synthetic_test_size": args.test_limit},
              "model": {"backbone": args.backbone, "projector_hidden_dim": 512, "projector_out_dim": 128},
              "optim": {"optimizer": "adamw", "lr": 0.004, "weight_decay": 1e-4, "batch_size": args.batch},
              "schedule": {"epochs": args.epochs, "warmup_epochs": 1},
              "eval": {"knn_k": 20, "knn_every_epochs": 0, "metrics_every_steps": 10},
              "runtime": {"device": args.device}}
    workspace = args.keep or Path(tempfile.mkdtemp(prefix="sslwb-zoo-"))
    print(f"data {source} (train {args.train_limit}, test {args.test_limit}), backbone {args.backbone}, "
          f"batch {args.batch}, {args.epochs} epochs, AdamW lr 0.004/256, probe {args.probe_epochs} L-BFGS "
          f"iterations, device {args.device}; {len(args.methods)} methods", flush=True)
    rows = []
    try:
        for name in args.methods:
            row = train_row(name, shared, workspace, args)
            rows.append(row)
            print(f"  {name}: exit {row['code']}, kNN {row['knn']:.3f}, probe {row['probe']:.3f}, "
                  f"{row['wall']:.0f}s {row['error']}", flush=True)
        print_rows(rows)
        reference = next((r for r in rows if r["code"] == 0 and not r["swapped"]), None)
        if reference:  # the first method's network at random init, scored the same way
            random_knn = evaluate_knn_checkpoint(reference["run"], k=20, temperature=0.1, record=False,
                                                 random_init=True)["top1"]
            random_probe = random_init_probe(reference["run"], args)
            print(f"| {'random init':<18} | {'(' + reference['name'] + ' net)':<20} | {random_knn:9.3f} | "
                  f"{random_probe:11.3f} | {'':9} | {'':10} | {'':13} | {'':9} | {'':5} | {'':6} |")
        print_families(rows)
        failed = [r for r in rows if r["error"]]
        for r in failed:
            print(f"problem: {r['name']}: {r['error']}")
        if any(r["swapped"] for r in rows):
            print(f"* trained with this backbone: its families exclude {args.backbone}")
    finally:
        if not args.keep:
            shutil.rmtree(workspace, ignore_errors=True)


if __name__ == "__main__":
    main()
