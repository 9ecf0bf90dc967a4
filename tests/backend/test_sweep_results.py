"""A sweep's results: the sweeps of a workspace, one row per run (point, state, final kNN, linear
probe), the grid test and the kNN matrix; and reordering the queue."""

import json
import math

import pytest

from backend.errors import ConfigError
from backend.run_queue import RunQueue
from backend.runs import EVENTS_FILE, record_evaluation
from backend.sweep import create_sweep, expand_grid
from backend.sweep_results import is_grid, knn_grid, list_sweeps, sweep_row
from tests.backend.trainer_helpers import make_run, tiny_config


def finish(run_dir, knn):
    """Hand-written events of a finished run whose last kNN top-1 is ``knn``."""
    events = [{"kind": "status", "time": 1.0, "state": "running", "message": "", "epochs": 1, "total_steps": 2},
              {"kind": "metric", "time": 2.0, "step": 2, "epoch": 0, "name": "knn_top1", "value": knn / 2},
              {"kind": "metric", "time": 3.0, "step": 2, "epoch": 0, "name": "knn_top1", "value": knn},
              {"kind": "status", "time": 4.0, "state": "finished", "message": "done", "step": 2, "epoch": 1}]
    (run_dir / EVENTS_FILE).write_text("".join(json.dumps(e) + "\n" for e in events))


def test_sweep_rows_and_the_knn_grid(tmp_path):
    ws = tmp_path / "ws"
    points = expand_grid({"method.temperature": [0.5, 0.1], "optim.lr": [0.2, 0.05]})
    runs = create_sweep(ws, tiny_config(), points, name="t-lr")
    other = create_sweep(ws, tiny_config(), expand_grid({"optim.lr": [0.1]}), name="solo")
    make_run(tmp_path)  # not part of any sweep
    for i, run_dir in enumerate(runs[:3]):
        finish(run_dir, 0.1 * (i + 1))
    record_evaluation(runs[0], {"kind": "linear_probe", "top1": 0.42})
    record_evaluation(runs[0], {"kind": "linear_probe", "top1": 0.2, "label_fraction": 0.01})

    sweeps = list_sweeps(ws)
    assert sorted(s.name for s in sweeps) == ["solo", "t-lr"]
    grid = next(s for s in sweeps if s.name == "t-lr")
    assert grid.fields == ["method.temperature", "optim.lr"] and grid.run_dirs == runs
    assert next(s for s in sweeps if s.name == "solo").run_dirs == other

    rows = [sweep_row(d) for d in grid.run_dirs]
    assert [r.point for r in rows] == points
    assert [r.state for r in rows] == ["finished"] * 3 + ["created"]
    assert [r.knn for r in rows[:3]] == pytest.approx([0.1, 0.2, 0.3]) and rows[3].knn is None
    assert rows[0].linear_probe == pytest.approx(0.42)  # the full-label probe, not the 1 % one
    assert rows[1].linear_probe is None

    assert is_grid(rows, grid.fields) and not is_grid(rows[:3], grid.fields)
    xs, ys, matrix = knn_grid(rows, "optim.lr", "method.temperature")
    assert xs == [0.05, 0.2] and ys == [0.1, 0.5]  # sorted values
    # (t=0.5, lr=0.2) -> 0.1, (0.5, 0.05) -> 0.2, (0.1, 0.2) -> 0.3, (0.1, 0.05) unfinished
    assert math.isnan(matrix[0][0]) and matrix[0][1] == pytest.approx(0.3)
    assert matrix[1] == pytest.approx([0.2, 0.1])
    xs, ys, matrix = knn_grid(rows[:2], "optim.lr")
    assert ys == [None] and matrix == [pytest.approx([0.2, 0.1])]
    with pytest.raises(ValueError, match="unknown sweep metric"):
        knn_grid(rows, "optim.lr", metric="loss")


def test_queued_runs_move_and_others_keep_their_places(tmp_path):
    runs = [make_run(tmp_path, name=str(i)) for i in range(4)]
    q = RunQueue(tmp_path / "ws")
    q.enqueue(runs, device="cpu")
    q.mark_started(runs[0], pid=1, device="cpu")
    order = lambda: [e.run_dir for e in q.entries()]  # noqa: E731
    key = [str(r.resolve()) for r in runs]
    assert q.move(runs[3], -1) == 1
    assert order() == [key[0], key[1], key[3], key[2]]
    assert q.move(runs[3], -5) == 0  # clamped: first of the queued, the started one stays first
    assert order() == [key[0], key[3], key[1], key[2]]
    assert q.move(runs[3], 9) == 2
    assert order() == [key[0], key[1], key[2], key[3]]
    assert q.next_startable(["cpu"])[0].run_dir == key[1]
    with pytest.raises(ConfigError, match="only queued runs move"):
        q.move(runs[0], 1)
    assert q.free_slots(["cpu", "cpu"]) == ["cpu"]
