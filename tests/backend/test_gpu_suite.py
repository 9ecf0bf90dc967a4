"""The GPU suite (benchmarks/gpu_suite.py) dry-runs on the CPU: every stage present and none failed, the
report written as JSON and markdown, the DINO export loadable and under 16 MB, no GUI module loaded.
Also its pieces that a dry run cannot reach: the JUnit counts of the CUDA-test stage, the compact
.npy cache written back losslessly, and the 200-epoch extrapolation."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

STAGES = ["versions", "data", "cuda_tests", "kernels", "throughput", "simclr", "dino"]


@pytest.mark.slow
def test_the_dry_run_runs_every_stage(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CUDA_VISIBLE_DEVICES": ""}
    res = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_suite.py"), "--dry-run", "--out", str(out)],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert report["dry_run"] is True
    assert list(report["stages"]) == STAGES
    for name, stage in report["stages"].items():
        assert stage["status"] in ("ok", "skipped"), (name, stage.get("error"), stage.get("traceback"))
    assert report["stages"]["cuda_tests"] == {**report["stages"]["cuda_tests"], "status": "skipped",
                                              "note": "no CUDA: skipped"}
    assert report["gui_modules_loaded"] == []
    assert report["stages"]["versions"]["torch"] == torch.__version__
    assert report["stages"]["kernels"]["per_step"] > report["stages"]["kernels"]["augmentation"] > 0
    timed = [r for r in report["stages"]["throughput"]["rows"] if r["what"] in ("real step", "torchvision DataLoader")]
    assert {r["batch"] for r in timed} == {8, 16} and all(r["img_s"] > 0 for r in timed)
    simclr = report["stages"]["simclr"]
    assert simclr["epochs"] and all(0 <= e["knn_top1"] <= 1 and e["epoch_s"] > 0 for e in simclr["epochs"])
    assert simclr["extrapolation"]["train_200_epochs_s"] > 0
    export = report["stages"]["dino"]["export"]
    assert export["bytes"] < 16 * 2**20 and export["max_abs_diff_vs_float32"] < 0.05
    from backend.export import load_encoder
    encoder = load_encoder(out / "dino_export")      # the hash beside it is checked
    assert encoder(torch.rand(2, 3, 16, 16)).shape == (2, export["feature_dim"])
    assert sorted(p.name for p in out.rglob("*") if p.is_file()) == sorted(
        ["report.json", "report.md", "encoder.safetensors", "encoder.safetensors.sha256", "model_card.json",
         "README.md"])   # at most 8 files come back from the device
    md = (out / "report.md").read_text()
    assert "| simclr | ok |" in md and "## throughput" in md


def test_junit_counts_of_the_cuda_stage(tmp_path):
    import gpu_suite_stages as stages

    xml = tmp_path / "r.xml"
    xml.write_text('<testsuites><testsuite name="pytest" tests="4" failures="1" errors="0" skipped="1">'
                   '<testcase classname="tests.backend.test_a" name="test_ok"/>'
                   '<testcase classname="tests.backend.test_a" name="test_bad"><failure message="x"/></testcase>'
                   '<testcase classname="tests.backend.test_a" name="test_skip"><skipped/></testcase>'
                   '<testcase classname="tests.backend.test_a" name="test_ok2"/></testsuite></testsuites>')
    assert stages.junit_counts(xml) == {"tests": 4, "passed": 2, "failed": 1, "errors": 0, "skipped": 1,
                                        "failures": ["tests.backend.test_a::test_bad"]}
    assert "tests/backend/test_augment_devices.py" in stages.cuda_test_files()


def test_the_compact_cache_is_written_back_losslessly(tmp_path):
    import gpu_suite_data

    from backend.config import DataConfig
    from backend.data.sources import load_dataset

    meta = gpu_suite_data.build_cache("synthetic", tmp_path / "npy", train=20, test=10)
    assert meta["counts"] == {"train": 20, "test": 10} and gpu_suite_data.is_npy_cache(tmp_path / "npy")
    source, note = gpu_suite_data.resolve_source(tmp_path / "npy", tmp_path / "work")
    assert source.startswith("imagefolder:") and "npy" in note
    for split in ("train", "test"):
        original = np.load(tmp_path / "npy" / split / "images.npy")
        back = load_dataset(DataConfig(source=source), split)
        assert sorted(back.class_names) == sorted(meta["class_names"])
        # an image folder sorts its classes and files: compare as multisets of (class name, pixels)
        want = sorted((meta["class_names"][lab], img.tobytes()) for img, lab in
                      zip(original, np.load(tmp_path / "npy" / split / "labels.npy")))
        got = sorted((back.class_names[lab], img.tobytes()) for img, lab in
                     zip(back.images.numpy(), back.labels.numpy()))
        assert got == want
    with pytest.raises(FileNotFoundError, match="neither an image folder nor a compact"):
        gpu_suite_data.resolve_source(tmp_path / "missing", tmp_path / "work")


def test_the_200_epoch_extrapolation():
    import gpu_suite_runs as runs

    table = [{"epoch": 1, "epoch_s": 30.0, "knn_s": 1.0}, {"epoch": 2, "epoch_s": 2.0, "knn_s": 1.0},
             {"epoch": 3, "epoch_s": 4.0, "knn_s": 1.0}]
    ex = runs.extrapolate(table, steps_per_epoch=10, batch=500)   # 5,000 images an epoch
    assert ex["steady_epoch_s"] == 3.0 and ex["train_200_epochs_s"] == 30.0 + 199 * 3.0
    assert ex["knn_200_epochs_s"] == 200.0 and ex["epoch_img_s"] == pytest.approx(5000 / 3.0, rel=1e-3)
    assert ex["train_200_epochs_full_cifar10_s"] == pytest.approx(27.0 + 200 * 50_000 / (5000 / 3.0), rel=1e-3)
    assert runs.extrapolate([], 10, 500) == {}
