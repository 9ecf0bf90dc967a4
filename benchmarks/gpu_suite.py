"""One-command GPU suite: versions, the CUDA tests, the real training step's img/s and memory, a SimCLR
ResNet-18 CIFAR-10 run and a short DINO ViT-Tiny run, in one report (issue 15, item 3).

    python benchmarks/gpu_suite.py --data .gpu_data/cifar10-12k --out $OUT/gpu_suite --budget-s 510
    python benchmarks/gpu_suite.py --dry-run          # CPU: every stage at tiny sizes, a few seconds each

Stages, in order, each with a share of the remaining ``--budget-s`` (the suite keeps its own clock;
time a stage leaves unused flows to the later ones), each catching its own failure (recorded in
the report with the error; the other stages still run), the report rewritten after every stage
(``report.json`` and ``report.md`` in ``--out``), so a device that times out keeps what finished:

1. ``versions``: Python, torch, torchvision, CUDA, cuDNN, the driver and the GPU's name.
2. ``data``: ``--data`` resolved (``benchmarks/gpu_suite_data.py``: an image folder, or the compact
   uint8 .npy cache that fits the device's 64 MiB carry limit).
3. ``cuda_tests``: ``pytest -m cuda`` on the test files that carry the marker, as a subprocess with a
   timeout; pass/fail counts. The engine's install does not need pytest; where the device lacks it
   the stage is skipped with a note. To bring it, here: ``python3 -m pip download --no-deps
   --only-binary=:all: --python-version 3.12 -d .whl pytest pluggy iniconfig packaging`` and on the
   device ``python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl`` with
   ``PYTHONPATH=/tmp/site`` (see /work/.library/device/README.md; the H200 image has pytest).
4. ``kernels``: CUDA kernels one real training step launches, augmentation broken out
   (torch.profiler over ``optimisation_step``; ``benchmarks/kernel_count.py``).
5. ``throughput``: img/s and peak memory (``torch.cuda.max_memory_allocated``) of the trainer's real
   step (``backend.training.step.optimisation_step`` on a Training built by ``prepare``) for
   ResNet-18 at batch 256/512/1024, eager and with ``runtime.compile``; the torchvision DataLoader
   baseline (``benchmarks/throughput.py``) and, when importable, lightly's pipeline
   (``benchmarks/peer_lightly.py``) feeding the same model step.
6. ``simclr``: the SimCLR preset (ResNet-18, batch 512, the 200-epoch cosine schedule) trained by
   the engine (``run_training``) for as many epochs as its share allows (stopped at an epoch
   boundary); time and kNN per epoch from the run's events; the extrapolated 200-epoch time.
7. ``dino``: if time remains, the dino_vit preset (ViT-Tiny) for a short run; its encoder is
   exported by the engine (``backend.export``), stored in half precision (< 16 MB) in
   ``--out/dino_export`` (loadable with ``backend.export.load_encoder``).

Only the engine's dependencies are imported (no Qt, no umap, lightly only as an optional peer);
the report lists any GUI module that got loaded. Without CUDA the suite dry-runs: tiny_cnn,
batch 8-16, 1-2 steps, synthetic data (``tests/backend/test_gpu_suite.py`` runs it).

On the device (one ``run`` call, no more than 8 files come back, all from ``--out``):

    # here, once: the compact CIFAR-10 cache (10k train + 2k test, 35 MiB; the full 50k is 147 MiB,
    # over the 64 MiB carry limit) and, for the lightly row, lightly's pure-Python wheel (0.3 MB;
    # what it imports - lightning-utilities, timm, yaml, ... - is in the H200 image)
    python benchmarks/gpu_suite_data.py --out .gpu_data/cifar10-12k --train 10000 --test 2000
    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_17_x86_64 -d .whl lightly==1.6.0
    # the device call (benchmarks/gpu_suite.sh installs .whl/*.whl into /tmp/site first):
    run(command="bash benchmarks/gpu_suite.sh", carry=[".gpu_data", ".whl"], timeout_s=600)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import torch  # noqa: E402

import gpu_suite_data  # noqa: E402
import gpu_suite_report as report  # noqa: E402
import gpu_suite_runs as runs  # noqa: E402
import gpu_suite_stages as stages  # noqa: E402

GUI_MODULES = ("PySide6", "pyqtgraph", "umap", "workbench")
# Relative shares of the remaining time; a stage gets remaining * weight / (its + later weights).
STAGES = (("versions", stages.versions, 0.1), ("data", stages.data, 0.3), ("cuda_tests", stages.cuda_tests, 1.0),
          ("kernels", stages.kernels, 0.3), ("throughput", stages.throughput, 3.5),
          ("simclr", runs.simclr, 4.0), ("dino", runs.dino, 1.2))


class Suite:
    """The suite's clock, sizes, shared state between stages and the report being built."""

    def __init__(self, args):
        self.args, self.dry = args, args.dry_run or not torch.cuda.is_available()
        self.device = torch.device("cpu" if self.dry else "cuda")
        if self.dry:
            torch.set_num_threads(1)   # tiny sizes: threads only contend (and CI machines are shared)
        self.started = time.perf_counter()
        self.budget = float(args.budget_s if args.budget_s else (120 if self.dry else 510))
        self.out = Path(args.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.work = Path(tempfile.mkdtemp(prefix="gpu-suite-"))
        os.environ.setdefault("SSLWB_CACHE_DIR", str(self.work / "cache"))
        self.default_data = gpu_suite_data.CIFAR
        self.shared: dict = {}          # what one stage hands a later one (data source, throughput rows)
        self.stage_deadline = self.started + self.budget
        self.report = {"suite": "benchmarks/gpu_suite.py", "dry_run": self.dry, "budget_s": self.budget,
                       "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "stages": {}}
        if self.dry and not args.dry_run:
            self.report["note"] = "no CUDA here: dry run at tiny sizes"

    def remaining(self) -> float:
        """Seconds left of the whole budget."""
        return self.started + self.budget - time.perf_counter()

    def stage_left(self) -> float:
        """Seconds left of the running stage's share."""
        return self.stage_deadline - time.perf_counter()

    def run_stage(self, index: int) -> None:
        """Run stage ``index`` within its share; record its result or its failure; write the report."""
        name, fn, weight = STAGES[index]
        later = sum(w for _, _, w in STAGES[index:])
        share = max(0.0, self.remaining()) * weight / later
        self.stage_deadline = time.perf_counter() + share
        t0 = time.perf_counter()
        print(f"[gpu_suite] {name}: share {share:.0f}s of {self.remaining():.0f}s left", flush=True)
        try:
            result = fn(self) or {}
            result.setdefault("status", "ok")
        except Exception as exc:  # noqa: BLE001 - one stage's failure never loses the others
            result = {"status": "failed", "error": f"{type(exc).__name__}: {exc}",
                      "traceback": traceback.format_exc()[-3000:]}
        result["seconds"] = round(time.perf_counter() - t0, 2)
        result["share_s"] = round(share, 1)
        self.report["stages"][name] = result
        print(f"[gpu_suite] {name}: {result['status']} in {result['seconds']}s"
              + (f" - {result.get('error') or result.get('note')}" if result.get("error") or result.get("note") else ""),
              flush=True)
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        self.write()

    def write(self) -> None:
        """Write report.json and report.md into --out (atomically: a kill leaves the last complete pair)."""
        self.report["elapsed_s"] = round(time.perf_counter() - self.started, 1)
        self.report["gui_modules_loaded"] = [m for m in GUI_MODULES if m in sys.modules]
        for name, text in (("report.json", json.dumps(self.report, indent=1, default=str) + "\n"),
                           ("report.md", report.markdown(self.report))):
            tmp = self.out / f".{name}.tmp"
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, self.out / name)


def parse_args(argv=None):
    """The suite's options."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=None,
                    help="image folder or compact .npy cache (benchmarks/gpu_suite_data.py); default "
                         "../shared/data/cifar10 (a dry run without --data uses synthetic shapes)")
    ap.add_argument("--out", default="gpu_suite_out", help="where report.json, report.md and the DINO export go")
    ap.add_argument("--budget-s", type=float, default=0.0,
                    help="the suite's whole time budget in seconds (default 510 on a GPU, 120 in a dry run)")
    ap.add_argument("--dry-run", action="store_true", help="tiny sizes on the CPU (automatic without CUDA)")
    ap.add_argument("--stages", default=",".join(n for n, _, _ in STAGES),
                    help="comma list of stages to run (the others are recorded as not selected)")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    """Run the suite; print the report; 0 when no stage failed, 1 otherwise."""
    suite = Suite(parse_args(argv))
    chosen = set(suite.args.stages.split(","))
    unknown = chosen - {n for n, _, _ in STAGES}
    if unknown:
        sys.exit(f"--stages: unknown stage(s) {', '.join(sorted(unknown))}; choose from "
                 f"{', '.join(n for n, _, _ in STAGES)}")
    try:
        for index, (name, _, _) in enumerate(STAGES):
            if name in chosen:
                suite.run_stage(index)
            else:
                suite.report["stages"][name] = {"status": "skipped", "note": "not selected (--stages)", "seconds": 0}
        suite.write()
    finally:
        shutil.rmtree(suite.work, ignore_errors=True)
    print(report.markdown(suite.report), flush=True)
    return 1 if any(s["status"] == "failed" for s in suite.report["stages"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
