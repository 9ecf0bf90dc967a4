"""The run ledger: the one fold of a run's events (states, resume cut, ETA, collapse, incremental)."""

from __future__ import annotations

import io
import json
import math
import random

import numpy as np
import pytest

from backend.config import ExperimentConfig
from backend.events import EventWriter, metric_series
from backend.ledger import RunLedger, Series, error_state, fold, format_duration, shown_epoch
from backend.progress import ProgressPrinter
from backend.runs import RunReader, create_run, record_evaluation, summarize_run

D = 128


def metric(name, value, step, epoch=0, t=None):
    return {"kind": "metric", "time": 1000.0 + step if t is None else t, "step": step, "epoch": epoch,
            "name": name, "value": value}


def status(state, t=1000.0, message="", **extra):
    return {"kind": "status", "time": t, "state": state, "message": message, **extra}


def stream(steps=40, per_epoch=10, std=1 / math.sqrt(D), rank=60.0):
    """A plausible run: loss per step, probe metrics every 5 steps, kNN per epoch."""
    events = [status("started"), status("running", total_steps=100, steps_per_epoch=per_epoch, epochs=10)]
    for step in range(1, steps + 1):
        epoch = (step - 1) // per_epoch
        events.append(metric("loss", 5.0 * math.exp(-step / 20) + 1, step, epoch))
        if step % 5 == 0:
            events += [metric("embedding_std", std, step, epoch), metric("effective_rank", rank, step, epoch)]
        if step % per_epoch == 0:
            events.append(metric("knn_top1", 0.1 + 0.1 * epoch, step, epoch))
    return events


# ---- states -----------------------------------------------------------------------------------
def test_state_transitions_and_messages():
    led = RunLedger()
    assert led.state == "created"
    led.apply([status("loading_data", message="loading synthetic")])
    assert (led.state, led.message) == ("loading data", "loading synthetic")
    led.apply(stream(steps=12)[:2])
    assert led.state == "running" and (led.total_steps, led.steps_per_epoch, led.epochs) == (100, 10, 10)
    led.apply([metric("loss", 1.0, 12, 1), status("checkpoint", message="checkpoint saved", step=12, epoch=1)])
    assert led.state == "running" and led.has_checkpoint and led.message == "checkpoint saved"
    led.apply([status("paused", message="paused at step 12")])
    assert led.state == "paused"
    led.apply([status("finished", message="finished 100 steps", step=100)])
    assert (led.state, led.step, led.fraction(), led.shown_epoch()) == ("finished", 100, 1.0, 10)
    led.settle()
    assert led.state == "finished"  # a terminal state stays


def test_unexpected_error_is_a_crash_and_other_errors_are_errors():
    crash = {"kind": "error", "time": 1.0, "message": "RuntimeError: boom", "exit_code": 1, "unexpected": True}
    refused = {"kind": "error", "time": 1.0, "message": "optim.lr must be > 0", "exit_code": 2}
    assert (error_state(crash), error_state(refused)) == ("crashed", "error")
    led = fold([status("running"), crash])
    assert (led.state, led.message, led.exit_code) == ("crashed", "RuntimeError: boom", 1)
    assert led.outcome(1, crashed=False, tail="Traceback") == (
        "crashed", "training error: RuntimeError: boom; last output: Traceback")
    led = fold([refused])
    assert led.state == "error" and led.outcome(2, crashed=False) == ("error", "config error: optim.lr must be > 0")
    assert led.progress_text() == "failed before the first step"


def test_outcome_of_a_process_and_the_interrupted_rule():
    led = fold([status("running", total_steps=10), metric("loss", 1.0, 3)])
    assert led.outcome(0, crashed=False)[0] == "stopped"  # exit 0 without a terminal status
    assert led.outcome(-9, crashed=True)[0] == "crashed"
    state, message = led.outcome(9, crashed=True, kill_reason="killed on request")
    assert state == "killed" and "at step 3" in message
    assert led.outcome(1, crashed=False)[0] == "crashed"  # non-zero exit without an error event
    led.apply([status("finished", message="done")])
    assert led.outcome(0, crashed=False) == ("finished", "done")
    led.begin_segment()  # a new process: the old one's last status and error are forgotten
    assert led.outcome(0, crashed=False)[0] == "stopped"
    killed = fold([status("running"), metric("loss", 1.0, 1)])
    killed.settle()
    assert killed.state == "interrupted"
    empty = RunLedger()
    empty.settle()
    assert empty.state == "created"


# ---- series and the resume cut --------------------------------------------------------------------
def test_series_grows_by_doubling_and_keeps_points():
    s = Series(capacity=4)
    for i in range(1000):
        s.append(i, i // 100, float(i) / 2, 0.0)
    assert len(s) == 1000 and len(s.value) == 1024
    np.testing.assert_array_equal(s.steps, np.arange(1000))
    assert s.last() == 499.5


def test_resume_cut_drops_the_killed_segment_like_metric_series():
    events = [metric("loss", 1.0 / s, s) for s in range(1, 31)]
    events += [metric("knn_top1", 0.3, 20), metric("knn_top1", 0.4, 30)]
    events.append(status("resumed", t=2000.0, step=20, message="resumed from step 20"))
    events += [metric("loss", 2.0 / s, s) for s in range(21, 26)] + [metric("odd", float("inf"), 22)]
    led = RunLedger()
    led.apply(events[:32])
    kept = led.get("loss").values  # a plot may hold this view: the cut must not rewrite it
    update = led.apply(events[32:])
    assert update.metrics == {"loss", "knn_top1", "odd"}  # knn: its step-30 point was dropped
    assert json.dumps(led.columns(), sort_keys=True) == json.dumps(metric_series(events), sort_keys=True)
    assert led.get("loss").steps.tolist() == list(range(1, 26))
    assert led.get("loss").values[20] == pytest.approx(2.0 / 21)
    assert kept[25] == pytest.approx(1.0 / 26)
    assert led.get("knn_top1").steps.tolist() == [20] and led.last("knn_top1") == 0.3
    assert led.best_knn == 0.4  # the best reading ever reported (as the runs table shows)
    assert math.isnan(led.last("odd"))
    assert led.state == "running" and led.step == 22  # the latest metric's step


# ---- progress and ETA -----------------------------------------------------------------------------
def test_progress_and_eta_from_the_running_step_rate():
    led = fold(stream(steps=20))
    info = led.progress()
    assert (info.epoch, info.step, info.total_epochs, info.total_steps) == (2, 20, 10, 100)
    assert info.eta_seconds == pytest.approx(80.0)  # one step per second since step 1
    assert led.progress_text() == "epoch 2/10 · step 20/100 · ETA 1:20"
    led.apply([status("finished", t=1100.0)])
    assert led.progress().eta_seconds == 0.0 and "ETA" not in led.progress_text()


def test_eta_excludes_paused_time():
    events = [status("running", total_steps=100)] + [metric("loss", 1.0, s, t=1000.0 + s) for s in range(1, 11)]
    events += [status("paused", t=1010.0), status("running", t=5000.0, message="resumed after pause")]
    events += [metric("loss", 1.0, s, t=5000.0 + (s - 10)) for s in range(11, 21)]
    led = fold(events)
    # 19 steps in 19 running seconds (9 before the pause, 10 after); the hour paused does not count
    assert led.eta_seconds() == pytest.approx(80.0)
    led.apply([status("paused", t=5011.0)])
    assert led.eta_seconds() is None  # not running: no ETA


def test_a_resumed_process_measures_its_own_rate():
    events = [status("running", total_steps=100)] + [metric("loss", 1.0, s, t=1000.0 + 10 * s) for s in range(1, 11)]
    events += [status("resumed", t=9000.0, step=5)] + [metric("loss", 1.0, s, t=9000.0 + s) for s in range(6, 16)]
    assert fold(events).eta_seconds() == pytest.approx(85.0)  # 1 step/s, the old 10 s/step is gone


def test_one_duration_formatter_and_one_epoch_counter():
    assert [format_duration(x) for x in (None, float("nan"), -1, 5, 65, 3723)] == ["", "", "", "0:05", "1:05",
                                                                                    "1:02:03"]
    assert shown_epoch("running", 1, 3) == 2 and shown_epoch("finished", 1, 3) == 3
    assert shown_epoch("running", 5, 3) == 3 and shown_epoch("running", 0, 0) == 1
    assert shown_epoch("stopped", 0, 3, started=False) == 0


# ---- collapse -------------------------------------------------------------------------------------
def test_collapse_status_by_the_trainers_rule_and_its_own_warnings():
    healthy, collapsed = fold(stream(steps=20)), fold(stream(steps=20, std=1e-4, rank=1.2))
    assert healthy.collapse_message(D) == ""
    assert healthy.projector_dim() == pytest.approx(D)  # estimated as 1/std^2 of the first points
    reason = collapsed.collapse_message(D)
    assert "embedding_std" in reason and "effective rank" in reason
    warning = {"kind": "log", "time": 2000.0, "level": "warning", "warning": "collapse",
               "message": "representation collapse suspected at step 20"}
    healthy.apply([warning])
    assert healthy.collapse_message(D) == warning["message"]
    healthy.apply([{**warning, "warning": "collapse_cleared", "message": "healthy again"}])
    assert healthy.collapse_message(D) == ""


# ---- incremental == batch -------------------------------------------------------------------------
def _facts(led: RunLedger) -> dict:
    return {"state": led.state, "message": led.message, "step": led.step, "epoch": led.epoch,
            "totals": (led.total_steps, led.steps_per_epoch, led.epochs), "ckpt": led.has_checkpoint,
            "eta": led.eta_seconds(), "best": led.best_knn, "latest": led.latest, "collapse": led.collapse_message(D),
            "columns": json.dumps(led.columns(), sort_keys=True), "logs": list(led.logs), "n": led.n_events}


def test_incremental_fold_equals_the_batch_fold():
    events = stream(steps=30, std=1e-4, rank=1.1)
    events += [status("checkpoint", t=1031.0, step=30, epoch=2), status("paused", t=1032.0),
               status("running", t=1500.0), {"kind": "log", "time": 1501.0, "level": "info", "message": "hi"}]
    events += [metric("loss", 0.5, s, 2, t=1500.0 + s) for s in range(31, 36)]
    events += [status("resumed", t=3000.0, step=25), *(metric("loss", 0.4, s, 2, t=3000.0 + s) for s in range(26, 41))]
    events.append({"kind": "error", "time": 3100.0, "message": "boom", "exit_code": 1, "unexpected": True})
    batch = fold(events)
    rng = random.Random(0)
    for _ in range(5):
        led, i = RunLedger(), 0
        while i < len(events):
            n = rng.randint(0, 7)
            led.apply(events[i:i + n])
            i += n
        assert _facts(led) == _facts(batch)
    assert batch.state == "crashed"


def test_logs_are_bounded_and_a_summary_ledger_keeps_no_series():
    led = RunLedger(max_logs=5)
    update = led.apply([{"kind": "log", "time": float(i), "level": "info", "message": str(i)} for i in range(12)])
    assert [e["message"] for e in led.logs] == ["7", "8", "9", "10", "11"] and len(update.logs) == 5
    lean = fold(stream(steps=10), keep_series=False)
    assert lean.series == {} and lean.step == 10 and lean.best_knn == pytest.approx(0.1)


def test_progress_printer_shows_the_ledgers_counters():
    out = io.StringIO()
    printer = ProgressPrinter(out)
    for event in stream(steps=20):
        printer.on_event(event)
    printer.on_event(status("checkpoint", t=1021.0, message="checkpoint saved", step=20))
    text = out.getvalue()
    assert "20/100 ep 2" in text and "eta 1:20" in text and "checkpoint: checkpoint saved" in text


def test_run_reader_folds_only_what_was_appended(tmp_path):
    run = create_run(tmp_path, ExperimentConfig())
    w = EventWriter(run / "events.jsonl", echo=False)
    w.status("running", total_steps=10)
    w.metric("loss", 1.0, 1, 0)
    reader = RunReader(run)
    first = reader.read()
    assert (first.state, first.step, reader.events_read) == ("interrupted", 1, 2)
    assert reader.read() is first  # nothing changed: nothing read
    w.metric("knn_top1", 0.5, 2, 0)
    w.status("finished", "done")
    w.close()
    after = reader.read()
    assert (after.state, after.step, after.best_knn, reader.events_read) == ("finished", 2, 0.5, 4)
    assert after == summarize_run(run)
    record_evaluation(run, {"kind": "knn", "top1": 0.5})
    assert [e["top1"] for e in reader.read().evaluations] == [0.5]
    assert reader.events_read == 4
    (run / "events.jsonl").write_text("")  # rewritten shorter: folded again from the start
    assert reader.read().state == "created"
    live = fold([{"kind": "status", "time": 1.0, "state": "running", "message": ""}, metric("loss", 1.0, 7)])
    summary = reader.with_ledger(live)
    assert (summary.state, summary.step, summary.method) == ("running", 7, "simclr")
