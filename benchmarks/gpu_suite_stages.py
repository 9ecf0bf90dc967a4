"""The GPU suite's measuring stages: versions, data, the CUDA tests, kernel counts and the real step's
throughput (see ``benchmarks/gpu_suite.py``). Each takes the Suite and returns its result dict."""

from __future__ import annotations

import gc
import importlib.util
import os
import platform
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import torch

from backend.config import ExperimentConfig, deep_merge, preset_dict
from backend.training.scalars import flush
from backend.training.step import apply_update, loss_is_finite, optimisation_step

import gpu_suite_data
import kernel_count
import throughput as tv_baseline

ROOT = Path(__file__).resolve().parents[1]


# ---- sizes -----------------------------------------------------------------------------------
def step_cfg(suite, batch: int, compile_: bool = False) -> ExperimentConfig:
    """The SimCLR preset at ``batch`` on the suite's data (synthetic in a dry run), the schedule long
    enough that timing steps never reach its end; probe metrics every 20 steps as in a run."""
    dry = suite.dry
    data = {"source": suite.shared.get("source", "synthetic"), "test_limit": 64,
            "synthetic_train_size": max(2 * batch, 32), "synthetic_test_size": 32}
    if dry:
        data["train_limit"] = max(2 * batch, 32)
    return ExperimentConfig.from_dict(deep_merge(preset_dict("simclr"), {
        "data": data, "model": {"backbone": "tiny_cnn" if dry else "resnet18"},
        "optim": {"batch_size": batch}, "schedule": {"epochs": 200},
        "eval": {"probe_batch_size": 16 if dry else 256},
        "runtime": {"device": str(suite.device), "compile": compile_}}))


def batches(suite) -> tuple[int, ...]:
    """The batch sizes timed."""
    return (8, 16) if suite.dry else (256, 512, 1024)


def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ---- versions and data -------------------------------------------------------------------------
def versions(suite) -> dict:
    """What the suite ran on: Python, torch, torchvision, CUDA, cuDNN, driver, GPU."""
    import numpy
    import torchvision

    out = {"python": platform.python_version(), "platform": platform.platform(), "torch": torch.__version__,
           "torchvision": torchvision.__version__, "numpy": numpy.__version__,
           "cuda_available": torch.cuda.is_available(), "cuda": torch.version.cuda,
           "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
           "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
           "optional": {m: importlib.util.find_spec(m) is not None for m in ("pytest", "lightly", "PySide6", "umap")}}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        out.update(gpu=torch.cuda.get_device_name(0), capability=".".join(map(str, torch.cuda.get_device_capability(0))),
                   gpu_memory_gib=round(props.total_memory / 2**30, 1), multiprocessors=props.multi_processor_count,
                   driver=_driver_version())
    try:
        out["commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                       text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        out["commit"] = None
    return out


def _driver_version() -> str | None:
    try:
        res = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
        return res.stdout.strip().splitlines()[0] if res.returncode == 0 and res.stdout.strip() else None
    except (OSError, subprocess.SubprocessError):
        return None


def data(suite) -> dict:
    """Resolve --data into the data.source the runs train on (a dry run without --data: synthetic)."""
    if suite.dry and suite.args.data is None:
        suite.shared["source"] = "synthetic"
        return {"source": "synthetic", "note": "dry run: synthetic shapes"}
    t0 = time.perf_counter()
    source, note = gpu_suite_data.resolve_source(suite.args.data or suite.default_data, suite.work)
    suite.shared["source"] = source
    return {"source": source, "note": note, "prepare_s": round(time.perf_counter() - t0, 2)}


# ---- the CUDA tests ----------------------------------------------------------------------------
def cuda_test_files() -> list[str]:
    """Test files that carry the cuda marker (only they are collected: others may need Qt)."""
    return sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").rglob("test_*.py")
                  if "mark.cuda" in p.read_text(encoding="utf-8", errors="replace"))


def junit_counts(path) -> dict:
    """{tests, passed, failed, errors, skipped, failures: [names]} from a pytest JUnit XML file."""
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    counts = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")}
    failed = [f"{c.get('classname')}::{c.get('name')}" for s in suites for c in s.iter("testcase")
              if c.find("failure") is not None or c.find("error") is not None]
    return {"tests": counts["tests"], "passed": counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"],
            "failed": counts["failures"], "errors": counts["errors"], "skipped": counts["skipped"], "failures": failed}


def cuda_tests(suite) -> dict:
    """``pytest -m cuda`` over the marked files, in a subprocess with the stage's share as timeout."""
    if not torch.cuda.is_available():
        return {"status": "skipped", "note": "no CUDA: skipped"}
    if importlib.util.find_spec("pytest") is None:
        return {"status": "skipped", "note": "pytest is not installed here: carry it as a wheel (see the suite's docstring)"}
    files = cuda_test_files()
    xml = suite.work / "cuda-tests.xml"
    cmd = [sys.executable, "-m", "pytest", "-m", "cuda", "-q", "-p", "no:cacheprovider", "-o", "addopts=",
           f"--junitxml={xml}", *files]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    timeout = max(30.0, suite.stage_left())
    try:
        res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        tail = (exc.stdout or b"")[-2000:]
        return {"status": "failed", "error": f"pytest -m cuda did not finish in {timeout:.0f}s",
                "output_tail": tail.decode(errors="replace") if isinstance(tail, bytes) else tail}
    out = {"files": files, "returncode": res.returncode, "output_tail": (res.stdout + res.stderr)[-2000:]}
    if not xml.is_file():
        return {**out, "status": "failed", "error": f"pytest exited {res.returncode} without a report"}
    out.update(junit_counts(xml))
    if out["failed"] or out["errors"] or res.returncode not in (0, 5):
        out["status"] = "failed"
        out["error"] = f"{out['failed']} failed, {out['errors']} errors of {out['tests']} CUDA tests"
    return out


# ---- kernel counts and throughput --------------------------------------------------------------
def kernels(suite) -> dict:
    """Kernels (CUDA) or top-level aten ops (CPU) of one real step, augmentation broken out."""
    batch = batches(suite)[0]
    t = kernel_count.prepared_cfg(step_cfg(suite, batch), suite.work / "kernels")
    total, aug = kernel_count.count_step(t)
    unit = "CUDA kernels" if suite.device.type == "cuda" else "top-level aten ops"
    return {"unit": unit, "backbone": t.cfg.model.backbone, "batch": batch, "per_step": total, "augmentation": aug,
            "rest": total - aug, "note": "sync-free non-finite skip" if getattr(t.cfg.runtime, "sync_free_skip", False)
            else "one host sync per step (the non-finite check)"}


def time_real_step(t, warmup: int, steps: int) -> dict:
    """img/s of ``optimisation_step`` + ``flush`` as the loop runs them; peak memory on CUDA."""
    device, batch, state = t.device, t.cfg.optim.batch_size, t.state
    order = torch.arange(len(t.train_set))
    spe = max(1, t.steps_per_epoch)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0, first = time.perf_counter(), None
    for i in range(warmup):
        optimisation_step(t, state, order, i % spe)
        flush(state, t.events)
        if i == 0:
            _sync(device)
            first = time.perf_counter() - t0
    _sync(device)
    t1 = time.perf_counter()
    for i in range(steps):
        optimisation_step(t, state, order, (warmup + i) % spe)
        flush(state, t.events)
    _sync(device)
    seconds = time.perf_counter() - t1
    row = {"img_s": round(steps * batch / seconds, 1), "step_ms": round(1000 * seconds / steps, 2),
           "first_step_s": None if first is None else round(first, 2)}
    if device.type == "cuda":
        row["peak_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
    return row


def views_step(t):
    """The model half of ``optimisation_step`` for views made elsewhere (the DataLoader baselines):
    channels_last, autocast, the method's step, backward, the host-side finite check, the update."""
    def step(*views):
        views = list(views)
        if t.channels_last:
            views = [v.contiguous(memory_format=torch.channels_last) for v in views]
        with torch.autocast(device_type=t.device.type, dtype=t.amp_dtype, enabled=t.amp_dtype is not None):
            out = t.step_fn(views, None, 0.0)
        out.loss.backward()
        if loss_is_finite(t, out.loss.detach()):
            apply_update(t, 0.0)
        else:
            t.optimizer.zero_grad(set_to_none=True)
    return step


def peer_lightly(t, suite, batch: int, steps: int, workers: int) -> dict:
    """lightly's SimCLR pipeline (benchmarks/peer_lightly.py) at ``batch``, or a note without lightly."""
    if importlib.util.find_spec("lightly") is None:
        return {"what": "lightly pipeline", "batch": batch, "status": "skipped",
                "note": "lightly is not importable here (peer only; see benchmarks/peer_lightly.py)"}
    import peer_lightly as peer

    try:
        transform, model, _, loss_fn, after = peer.lightly_setup("simclr", t.cfg)
    except ImportError as exc:   # lightly found, one of its needs missing (e.g. lightning-utilities)
        return {"what": "lightly pipeline", "batch": batch, "status": "skipped",
                "note": f"lightly does not import here: {exc}"}
    cnn = t.channels_last
    model.to(suite.device, memory_format=torch.channels_last if cnn else torch.preserve_format)
    step = peer.make_step(loss_fn, model, t.cfg, suite.device, after, cnn)
    ips = tv_baseline.measure(peer.lightly_batches(t.train_set.images, transform, batch, suite.device, steps + 2,
                                                   workers), step, suite.device, batch)
    return {"what": "lightly pipeline", "batch": batch, "img_s": round(ips, 1)}


def throughput(suite) -> dict:
    """The real step eager at every batch (with the DataLoader baseline and lightly beside it), then
    compiled; rows that no longer fit the share are recorded as skipped."""
    warmup, steps = (1, 1) if suite.dry else (3, 15)
    workers = 0 if suite.dry else min(12, len(os.sched_getaffinity(0)))
    rows, plan = [], [(b, False) for b in batches(suite)] + [(b, True) for b in batches(suite)]
    for batch, compiled in plan:
        what = "real step" + (" compiled" if compiled else "")
        if compiled and suite.dry:
            rows.append({"what": what, "batch": batch, "status": "skipped",
                         "note": "compile is not timed in a dry run (tests/backend/test_compile_cpu.py covers it)"})
            continue
        if suite.stage_left() < (60 if compiled else 10) and not suite.dry:
            rows.append({"what": what, "batch": batch, "status": "skipped", "note": "out of the stage's time"})
            continue
        if compiled:
            torch._dynamo.reset()   # each batch compiled afresh (static shapes), not as a dynamic recompile
        t = None
        try:
            t = kernel_count.prepared_cfg(step_cfg(suite, batch, compiled), suite.work / "throughput")
            rows.append({"what": what, "batch": batch, "backbone": t.cfg.model.backbone,
                         **time_real_step(t, warmup + (2 if compiled else 0), steps)})
        except Exception as exc:  # noqa: BLE001 - a row's failure (e.g. out of memory) keeps the others
            rows.append(_failed(what, batch, exc))
        if t is not None and not compiled:
            rows += _baselines(t, suite, batch, steps, workers)
        del t
        gc.collect()
        if suite.device.type == "cuda":
            torch.cuda.empty_cache()
    suite.shared["throughput"] = rows
    failed = [r for r in rows if r.get("status") == "failed"]
    return {"rows": rows, "summary": speedups(rows), "workers": workers, "timed_steps": steps,
            "source": suite.shared.get("source", "synthetic"),
            **({"status": "failed", "error": f"{len(failed)} row(s) failed"} if failed else {})}


def _failed(what: str, batch: int, exc: Exception) -> dict:
    return {"what": what, "batch": batch, "status": "failed", "error": f"{type(exc).__name__}: {exc}"[:500]}


def _baselines(t, suite, batch: int, steps: int, workers: int) -> list[dict]:
    """The torchvision DataLoader baseline and lightly's pipeline at ``batch``, each feeding the
    same model step (a failure of one is recorded in its row)."""
    rows = []
    try:
        ips = tv_baseline.measure(tv_baseline.baseline_batches(t.train_set.images, t.cfg, batch, suite.device,
                                                               steps + 2, workers), views_step(t), suite.device, batch)
        rows.append({"what": "torchvision DataLoader", "batch": batch, "img_s": round(ips, 1)})
    except Exception as exc:  # noqa: BLE001
        rows.append(_failed("torchvision DataLoader", batch, exc))
    try:
        rows.append(peer_lightly(t, suite, batch, steps, workers))
    except Exception as exc:  # noqa: BLE001
        rows.append(_failed("lightly pipeline", batch, exc))
    return rows


def speedups(rows: list[dict]) -> list[dict]:
    """Per batch: eager and compiled img/s of the real step, the baselines', and the best real
    step's speed-up over each baseline."""
    out = []
    for batch in sorted({r["batch"] for r in rows}):
        got = {r["what"]: r.get("img_s") for r in rows if r["batch"] == batch and r.get("img_s")}
        best = max(got.get("real step") or 0, got.get("real step compiled") or 0)
        row = {"batch": batch, "eager": got.get("real step"), "compiled": got.get("real step compiled"),
               "torchvision": got.get("torchvision DataLoader"), "lightly": got.get("lightly pipeline")}
        for name in ("torchvision", "lightly"):
            row[f"x_{name}"] = round(best / row[name], 2) if best and row[name] else None
        out.append(row)
    return out
