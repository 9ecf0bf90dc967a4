"""Sweeps: grid/random expansion, all-or-nothing creation, and a 2x2 sweep from the CLI."""

import json

import pytest

from backend.config import deep_merge, preset_dict
from backend.errors import ConfigError
from backend.events import read_events
from backend.run_meta import read_meta
from backend.run_queue import RunQueue
from backend.sweep import create_sweep, expand_grid, parse_values, point_overrides, sample_random, sweep_runs
from tests.backend.trainer_helpers import TINY, run_cli, tiny_config


def test_expand_grid_is_the_exact_cartesian_product():
    points = expand_grid({"optim.lr": [0.1, 0.2], "optim.batch_size": [32, 64, 128]})
    assert points == [{"optim.lr": a, "optim.batch_size": b} for a in (0.1, 0.2) for b in (32, 64, 128)]
    with pytest.raises(ConfigError, match="optim.lr"):
        expand_grid({"optim.lr": []})


def test_sample_random_is_seeded_and_in_range():
    space = {"optim.lr": "log-uniform:1e-4:1e-1", "optim.weight_decay": "uniform:0:0.01", "method.name": ["simclr", "byol"]}
    a, b = sample_random(space, 20, seed=3), sample_random(space, 20, seed=3)
    assert a == b and a != sample_random(space, 20, seed=4)
    assert all(1e-4 <= p["optim.lr"] <= 1e-1 and 0 <= p["optim.weight_decay"] <= 0.01 for p in a)
    assert {p["method.name"] for p in a} <= {"simclr", "byol"}
    with pytest.raises(ConfigError, match="log-uniform needs LO > 0"):
        sample_random({"optim.lr": "log-uniform:0:1"}, 2)


def test_point_overrides_and_values():
    assert point_overrides({"optim.lr": 0.1, "optim.batch_size": 8, "name": "x"}) == \
        {"optim": {"lr": 0.1, "batch_size": 8}, "name": "x"}
    assert parse_values("0.1, 2,simclr,true") == [0.1, 2, "simclr", True]


def test_bad_point_refuses_the_whole_sweep(tmp_path):
    points = [{"optim.lr": 0.1}, {"optim.lr": -1.0}]
    with pytest.raises(ConfigError, match=r"sweep point \{'optim.lr': -1.0\}.*optim.lr"):
        create_sweep(tmp_path / "ws", tiny_config(), points)
    with pytest.raises(ConfigError, match="optim.nope"):
        create_sweep(tmp_path / "ws", tiny_config(), [{"optim.nope": 1}])
    with pytest.raises(ConfigError, match="device must be"):
        create_sweep(tmp_path / "ws", tiny_config(), [{"optim.lr": 0.1}], device="gpu0")
    assert not (tmp_path / "ws" / "runs").exists() and not (tmp_path / "ws" / "queue.json").exists()


def test_create_sweep_tags_and_enqueues(tmp_path):
    runs = create_sweep(tmp_path / "ws", tiny_config(), expand_grid({"optim.lr": [0.1, 0.2]}), name="lr")
    metas = [read_meta(r) for r in runs]
    assert [m["sweep"]["point"] for m in metas] == [{"optim.lr": 0.1}, {"optim.lr": 0.2}]
    assert metas[0]["sweep"]["id"] == metas[1]["sweep"]["id"] and metas[0]["tags"] == [f"sweep:{metas[0]['sweep']['id']}"]
    assert [json.loads((r / "config.json").read_text())["config"]["optim"]["lr"] for r in runs] == [0.1, 0.2]
    assert [e.state for e in RunQueue(tmp_path / "ws").entries()] == ["queued", "queued"]
    assert sweep_runs(tmp_path / "ws", metas[0]["sweep"]["id"]) == runs and sweep_runs(tmp_path / "ws", "x") == []


@pytest.mark.long  # four trainer processes one after another (about a minute on 2 cores)
def test_sweep_cli_2x2_runs_one_after_the_other(tmp_path):
    cfg = tmp_path / "tiny.json"
    tiny = deep_merge(TINY, {"schedule": {"epochs": 1}, "runtime": {"device": "cpu"}, "eval": {"knn_k": 5},
                             "data": {"synthetic_train_size": 64, "synthetic_test_size": 32},
                             "optim": {"batch_size": 32}})
    cfg.write_text(json.dumps(deep_merge(preset_dict("quick"), tiny)))
    ws = tmp_path / "ws"
    proc = run_cli("sweep", "--config", cfg, "--workspace", ws, "--grid", "optim.lr=0.05,0.1",
                   "--grid", "runtime.seed=0,1", "--max-cpu-runs", "1", "--name", "g", timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    runs = sorted((ws / "runs").iterdir())
    assert len(runs) == 4
    points = [read_meta(r)["sweep"]["point"] for r in runs]
    assert sorted(map(json.dumps, points)) == sorted(json.dumps({"optim.lr": a, "runtime.seed": s})
                                                     for a in (0.05, 0.1) for s in (0, 1))
    spans = sorted((ev[0]["time"], ev[-1]["time"]) for ev in (read_events(r / "events.jsonl") for r in runs))
    assert all(end <= nxt for (_, end), (nxt, _) in zip(spans, spans[1:]))  # no overlap on 1 CPU slot
    table = proc.stdout.splitlines()[-5:]
    assert table[0].split() == ["run", "optim.lr", "runtime.seed", "state", "final", "kNN"]
    assert all(line.split()[3] == "finished" and 0.0 <= float(line.split()[4]) <= 1.0 for line in table[1:])
    assert [e.state for e in RunQueue(ws).entries()] == ["done"] * 4


def test_report_cli_writes_html(tmp_path):
    from backend.cli import main

    runs = create_sweep(tmp_path / "ws", tiny_config(), expand_grid({"optim.lr": [0.1, 0.2]}))
    out = tmp_path / "r.html"
    assert main(["report", *map(str, runs), "--out", str(out), "--title", "lr sweep"]) == 0
    assert "lr sweep" in out.read_text() and "optim.lr" in out.read_text()
    assert main(["report", str(tmp_path), "--out", str(out)]) == 2


def test_sweep_cli_no_run_and_bad_options(tmp_path, capsys):
    from backend.cli import main

    ws = tmp_path / "ws"
    assert main(["sweep", "--preset", "quick", "--workspace", str(ws), "--random", "3", "--seed", "1",
                 "--space", "optim.lr=log-uniform:0.01:0.1", "--space", "method.name=simclr,byol", "--no-run"]) == 0
    assert "3 runs queued" in capsys.readouterr().out and len(RunQueue(ws).entries()) == 3
    assert main(["queue", "--workspace", str(ws)]) == 0
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()] == ["queued"] * 3
    assert main(["sweep", "--preset", "quick", "--workspace", str(ws), "--no-run"]) == 2
    assert "give --grid" in capsys.readouterr().err
    assert main(["sweep", "--preset", "quick", "--workspace", str(ws), "--grid", "optim.lr=0.1,-1", "--no-run"]) == 2
    assert "sweep point {'optim.lr': -1}" in capsys.readouterr().err and len(RunQueue(ws).entries()) == 3
