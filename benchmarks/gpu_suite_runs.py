"""The GPU suite's training stages: a SimCLR ResNet-18 run as long as its share allows, and a short DINO
ViT-Tiny run whose encoder is exported in half precision (see ``benchmarks/gpu_suite.py``)."""

from __future__ import annotations

import json
import shutil
import statistics
import threading
import time
from pathlib import Path

import torch

from backend.checkpoint import file_sha256
from backend.config import ExperimentConfig, deep_merge, preset_dict
from backend.control import TrainerControl
from backend.export import export_encoder, load_encoder
from backend.export.formats import sidecar_path
from backend.runs import create_run
from backend.train import run_training

CIFAR_TRAIN = 50_000
TARGET_EPOCHS = 200
MAX_EXPORT_BYTES = 16 * 2**20
MIN_DINO_S = 45               # on a GPU: less than this left and the DINO run is skipped


def train_for_share(suite, cfg: ExperimentConfig, name: str, reserve_s: float) -> tuple[int, list[dict], Path]:
    """Train ``cfg`` with the engine's ``run_training`` until it ends or the stage's share (less
    ``reserve_s``) runs out: a stop is asked for after the epoch whose successor would not fit, and
    at the share's end at the latest. Returns (exit code, the run's events, run folder)."""
    run_dir = create_run(suite.work / name, cfg)
    control, events = TrainerControl(read_stdin=False), []
    deadline = suite.stage_deadline - reserve_s
    last = {"epoch_s": 0.0, "knn_s": 0.0}

    def on_event(event: dict) -> None:
        events.append(event)
        if event.get("kind") != "metric" or event.get("name") not in ("epoch_time", "knn_top1"):
            return
        last["epoch_s" if event["name"] == "epoch_time" else "knn_s"] = float(
            event["value"] if event["name"] == "epoch_time" else event.get("seconds", 0.0))
        if event["name"] == "knn_top1" or not cfg.eval.knn_every_epochs:
            if time.perf_counter() + 1.1 * (last["epoch_s"] + last["knn_s"]) > deadline:
                control.request("stop", reason="the GPU suite's time share for this run is used")

    timer = threading.Timer(max(1.0, deadline - time.perf_counter()), control.request,
                            args=("stop",), kwargs={"reason": "the GPU suite's time share ran out mid-epoch"})
    timer.daemon = True
    timer.start()
    try:
        code = run_training(run_dir, control=control, echo=False, on_event=on_event)
    finally:
        timer.cancel()
    return code, events, run_dir


def epoch_table(events: list[dict]) -> list[dict]:
    """Per finished epoch: seconds, kNN top-1 and its seconds, last loss."""
    rows: dict[int, dict] = {}
    loss = None
    for e in events:
        if e.get("kind") != "metric":
            continue
        if e["name"] == "loss":
            loss = e["value"]
        elif e["name"] == "epoch_time":
            rows.setdefault(e["epoch"], {"epoch": e["epoch"] + 1})["epoch_s"] = round(e["value"], 3)
            rows[e["epoch"]]["loss"] = None if loss is None else round(float(loss), 4)
        elif e["name"] == "knn_top1":
            row = rows.setdefault(e["epoch"], {"epoch": e["epoch"] + 1})
            row["knn_top1"], row["knn_s"] = round(e["value"], 4), e.get("seconds")
    return [rows[k] for k in sorted(rows)]


def extrapolate(table: list[dict], steps_per_epoch: int, batch: int) -> dict:
    """The 200-epoch wall time from the epochs run: the first epoch (compile, warm-up) once, the
    median of the others for the rest; also per image for the full 50,000-image CIFAR-10 set."""
    times = [r["epoch_s"] for r in table if "epoch_s" in r]
    if not times:
        return {}
    steady = statistics.median(times[1:]) if len(times) > 1 else times[0]
    knn = [r["knn_s"] for r in table if r.get("knn_s") is not None]
    knn_s = statistics.median(knn) if knn else 0.0
    images = steps_per_epoch * batch
    img_s = images / steady if steady > 0 else None
    train_200 = times[0] + (TARGET_EPOCHS - 1) * steady
    out = {"epochs_run": len(times), "first_epoch_s": times[0], "steady_epoch_s": round(steady, 3),
           "images_per_epoch": images, "epoch_img_s": round(img_s, 1) if img_s else None,
           "train_200_epochs_s": round(train_200, 1), "knn_200_epochs_s": round(TARGET_EPOCHS * knn_s, 1),
           "total_200_epochs_s": round(train_200 + TARGET_EPOCHS * knn_s, 1)}
    if img_s:
        full = (times[0] - steady) + TARGET_EPOCHS * CIFAR_TRAIN / img_s
        out["train_200_epochs_full_cifar10_s"] = round(full, 1)
        out["full_cifar10_note"] = ("training only, at this run's img/s with 50,000 images per epoch "
                                    "(kNN over a 50k bank not included)")
    return out


def _status(events: list[dict]) -> dict:
    started = next((e for e in events if e.get("kind") == "status" and e.get("state") == "running"), {})
    end = next((e for e in reversed(events) if e.get("kind") in ("status", "error")
                and e.get("state") in ("finished", "stopped", None)), {})
    return {"steps_per_epoch": started.get("steps_per_epoch"), "end": end.get("state") or end.get("kind"),
            "end_message": end.get("message")}


def _source(suite) -> str:
    """The data source the runs train on; without data (the data stage failed) the runs fail too."""
    if "source" in suite.shared:
        return suite.shared["source"]
    if suite.dry:
        return "synthetic"
    raise RuntimeError("no training data: the data stage failed (see its error)")


def simclr(suite) -> dict:
    """The SimCLR preset on the suite's data for as many epochs of its 200-epoch schedule as fit."""
    source = _source(suite)
    rows = suite.shared.get("throughput", [])
    eager = {r["batch"]: r.get("img_s", 0) for r in rows if r.get("what") == "real step"}
    compiled = {r["batch"]: r.get("img_s", 0) for r in rows if r.get("what") == "real step compiled"}
    use_compile = not suite.dry and compiled.get(512, 0) > eager.get(512, 0) > 0
    if use_compile:
        torch._dynamo.reset()
    over = {"data": {"source": source},
            "schedule": {"epochs": TARGET_EPOCHS},
            "eval": {"knn_every_epochs": 1}, "runtime": {"device": str(suite.device), "compile": use_compile,
                                                         "checkpoint_every_epochs": 10 ** 6}}
    if suite.dry:
        over = deep_merge(over, {"data": {"synthetic_train_size": 64, "synthetic_test_size": 32,
                                          "train_limit": 64, "test_limit": 32},
                                 "model": {"backbone": "tiny_cnn"}, "optim": {"batch_size": 16},
                                 "schedule": {"epochs": 2}, "eval": {"probe_batch_size": 16}})
    cfg = ExperimentConfig.from_dict(deep_merge(preset_dict("simclr"), over))
    code, events, _ = train_for_share(suite, cfg, "simclr", reserve_s=5)
    info = _status(events)
    table = epoch_table(events)
    out = {"source": source, "backbone": cfg.model.backbone, "batch": cfg.optim.batch_size, "compile": use_compile,
           "compile_reason": "compiled step was faster at batch 512 in the throughput stage" if use_compile
           else "eager (compile was not faster, or not measured)",
           "exit_code": code, **info, "epochs": table,
           "extrapolation": extrapolate(table, info["steps_per_epoch"] or 0, cfg.optim.batch_size)}
    if code != 0:
        out.update(status="failed", error=f"run_training exited {code}: {info['end_message']}")
    elif not table:
        out.update(status="failed", error="no epoch finished within the stage's share")
    return out


def halve_export(src: Path, dest: Path) -> dict:
    """Copy the export folder ``src`` to ``dest`` with the safetensors weights in float16 (the card,
    README and hash updated); checks it loads with ``load_encoder`` and matches the float32 file."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    dest.mkdir(parents=True, exist_ok=True)
    weights = src / "encoder.safetensors"
    with safe_open(str(weights), "pt") as f:
        metadata = f.metadata()
    state = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in load_file(str(weights)).items()}
    target = dest / "encoder.safetensors"
    save_file(state, str(target), metadata=metadata)
    digest = file_sha256(target)
    sidecar_path(target).write_text(f"{digest}  {target.name}\n", encoding="utf-8")
    card = json.loads((src / "model_card.json").read_text(encoding="utf-8"))
    entry = card.get("files", {}).get("safetensors", {})
    entry.update(sha256=digest, bytes=target.stat().st_size, dtype="float16",
                 note="weights stored as float16 by benchmarks/gpu_suite.py; load_encoder casts them to float32")
    (dest / "model_card.json").write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    shutil.copy(src / "README.md", dest / "README.md")
    reference, halved = load_encoder(src), load_encoder(dest)
    size = int(reference.metadata["image_size"])
    probe = torch.rand(4, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        full, half = reference(probe), halved(probe)
    return {"folder": str(dest), "bytes": target.stat().st_size, "sha256": digest,
            "max_abs_diff_vs_float32": float((full - half).abs().max()), "feature_dim": int(full.shape[1])}


def dino(suite) -> dict:
    """A short dino_vit (ViT-Tiny) run on the suite's data, its encoder exported in half precision."""
    if not suite.dry and suite.stage_left() < MIN_DINO_S:
        return {"status": "skipped", "note": f"under {MIN_DINO_S}s left: no DINO run"}
    over = {"data": {"source": _source(suite)},
            "schedule": {"epochs": 20, "warmup_epochs": 1}, "eval": {"knn_every_epochs": 1},
            "runtime": {"device": str(suite.device), "checkpoint_every_epochs": 10 ** 6}}
    if suite.dry:
        over = deep_merge(over, {"data": {"synthetic_train_size": 16, "synthetic_test_size": 16, "image_size": 16,
                                          "train_limit": 16, "test_limit": 16},
                                 "augment": {"num_local_crops": 0, "local_crop_size": 8}, "optim": {"batch_size": 8},
                                 "schedule": {"epochs": 1, "max_steps": 1}, "eval": {"probe_batch_size": 16}})
    cfg = ExperimentConfig.from_dict(deep_merge(preset_dict("dino_vit"), over))
    code, events, run_dir = train_for_share(suite, cfg, "dino", reserve_s=15 if not suite.dry else 0)
    info = _status(events)
    out = {"backbone": cfg.model.backbone, "batch": cfg.optim.batch_size, "exit_code": code, **info,
           "epochs": epoch_table(events), "steps": max((e.get("step", 0) for e in events if e.get("kind") == "metric"),
                                                       default=0)}
    if code != 0:
        return {**out, "status": "failed", "error": f"run_training exited {code}: {info['end_message']}"}
    fp32 = suite.work / "dino_export_fp32"
    export_encoder(run_dir, fp32, formats=("safetensors",))
    out["export"] = halve_export(fp32, suite.out / "dino_export")
    if out["export"]["bytes"] >= MAX_EXPORT_BYTES:
        out.update(status="failed", error=f"the half-precision export is {out['export']['bytes']} bytes (>= 16 MiB)")
    return out
