"""``runtime.compile = true`` on the CPU: the tiny backbone trains under torch.compile (inductor)
and its losses follow eager mode's."""

from __future__ import annotations

import shutil

import pytest
import torch

from tests.backend.trainer_helpers import losses_by_step, make_run


def _inductor_unavailable() -> str | None:
    """Why inductor cannot compile on this machine, or None when it can."""
    if shutil.which("g++") is None and shutil.which("c++") is None and shutil.which("clang++") is None:
        return "torch.compile on the CPU needs a C++ compiler (inductor's CPU backend); none is on PATH"
    try:
        torch.compile(lambda x: x * 2 + 1)(torch.ones(4))
    except Exception as exc:  # noqa: BLE001 - any failure names the reason in the skip
        return f"inductor cannot compile here: {type(exc).__name__}: {exc}"
    return None


@pytest.mark.long  # inductor compiles for about a minute on 2 cores
def test_compile_on_cpu_trains_like_eager(tmp_path):
    reason = _inductor_unavailable()
    if reason:
        pytest.skip(reason)
    from backend.train import run_training

    common = dict(model={"backbone": "tiny_cnn"}, schedule={"epochs": 1, "max_steps": 3},
                  runtime={"num_threads": 1}, eval={"knn_every_epochs": 0})
    eager = make_run(tmp_path / "eager", **common)
    compiled = make_run(tmp_path / "compiled", **{**common, "runtime": {"num_threads": 1, "compile": True}})
    assert run_training(eager, echo=False) == 0
    assert run_training(compiled, echo=False) == 0
    a, b = losses_by_step(eager), losses_by_step(compiled)
    assert sorted(a) == sorted(b) == [1, 2, 3]
    for step in a:
        assert b[step] == pytest.approx(a[step], rel=1e-3, abs=1e-4)
