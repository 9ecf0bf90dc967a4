"""Event stream and run directory: torn lines, resume de-duplication, summaries, metrics.h5."""

import json

from backend.config import ExperimentConfig
from backend.events import EventTail, EventWriter, metric_series, read_events
from backend.runs import create_run, list_runs, load_metrics, read_metrics_h5, read_run_config, write_metrics_h5


def test_torn_last_line_is_skipped_and_tail_is_incremental(tmp_path):
    path = tmp_path / "events.jsonl"
    w = EventWriter(path, echo=False)
    w.metric("loss", 1.0, 1, 0)
    tail = EventTail(path)
    assert [e["value"] for e in tail.read_new()] == [1.0]
    with open(path, "a") as fh:
        fh.write('{"kind": "metric", "name": "loss", "val')  # a writer killed mid-line
    assert tail.read_new() == []
    assert len(read_events(path)) == 1
    w.close()


def test_partial_line_completed_later_is_read(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text('{"kind": "log", "time": 1, "message": "a"}\n{"kind": "log", "ti')
    tail = EventTail(path)
    assert len(tail.read_new()) == 1
    with open(path, "a") as fh:
        fh.write('me": 2, "message": "b"}\n')
    assert [e["message"] for e in tail.read_new()] == ["b"]


def test_resume_drops_stale_points():
    events = [{"kind": "metric", "name": "loss", "step": s, "epoch": 0, "value": float(s), "time": 0}
              for s in range(1, 8)]
    events.append({"kind": "status", "state": "resumed", "step": 5, "time": 0})
    events += [{"kind": "metric", "name": "loss", "step": s, "epoch": 0, "value": 10.0 + s, "time": 0}
               for s in range(6, 9)]
    series = metric_series(events)["loss"]
    assert series["step"] == [1, 2, 3, 4, 5, 6, 7, 8]
    assert series["value"][5:] == [16.0, 17.0, 18.0]


def test_run_dir_round_trip_and_summary(tmp_path):
    cfg = ExperimentConfig.from_dict({"name": "demo", "method": {"name": "simclr"}})
    run = create_run(tmp_path, cfg)
    assert read_run_config(run) == cfg
    payload = json.loads((run / "config.json").read_text())
    assert {"config", "seed", "versions", "device"} <= set(payload)
    w = EventWriter(run / "events.jsonl", echo=False)
    w.status("running")
    for s in range(1, 4):
        w.metric("loss", 2.0 / s, s, 0)
    w.metric("knn_top1", 0.4, 3, 0)
    w.status("finished", "done")
    w.close()
    (summary,) = list_runs(tmp_path)
    assert summary.state == "finished" and summary.best_knn == 0.4 and summary.step == 3
    write_metrics_h5(run)
    h5 = read_metrics_h5(run / "metrics.h5")
    assert list(h5["loss"]["step"]) == [1, 2, 3]
    (run / "events.jsonl").unlink()
    assert list(load_metrics(run)["knn_top1"]["value"]) == [0.4]


def test_killed_run_shows_interrupted(tmp_path):
    run = create_run(tmp_path, ExperimentConfig())
    w = EventWriter(run / "events.jsonl", echo=False)
    w.status("running")
    w.metric("loss", 1.0, 1, 0)
    w.close()
    assert list_runs(tmp_path)[0].state == "interrupted"


def test_unexpected_exception_shows_crashed_but_config_errors_show_error(tmp_path):
    crashed = create_run(tmp_path, ExperimentConfig(), run_id="crashed")
    w = EventWriter(crashed / "events.jsonl", echo=False)
    w.status("running")
    w.error("training failed: RuntimeError: boom", 1, unexpected=True)
    w.close()
    refused = create_run(tmp_path, ExperimentConfig(), run_id="refused")
    w = EventWriter(refused / "events.jsonl", echo=False)
    w.error("optim.lr must be > 0, got 0", 2)
    w.close()
    states = {s.run_id: (s.state, s.message) for s in list_runs(tmp_path)}
    assert states["crashed"] == ("crashed", "training failed: RuntimeError: boom")
    assert states["refused"][0] == "error"
