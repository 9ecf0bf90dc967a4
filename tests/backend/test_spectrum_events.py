"""The trainer's spectrum events and the ledger's spectrum series (eval.spectrum_every_steps)."""

import math

import pytest

from backend.events import metric_series, read_events
from backend.ledger import RunLedger
from backend.spectrum_log import SpectrumSeries
from backend.train import run_training

from .trainer_helpers import make_run


def spectrum_event(step, values, alpha=1.5, rankme=3.0, name="spectrum"):
    return {"kind": "metric", "name": name, "step": step, "epoch": 0, "time": float(step),
            "values": values, "alpha": alpha, "rankme": rankme}


def test_ledger_keeps_spectra_and_alpha_rankme_series():
    ledger = RunLedger()
    update = ledger.apply([spectrum_event(1, [0.5, 0.3, 0.2]), spectrum_event(10, [0.4, 0.3, 0.2, 0.1], 1.2, 3.5),
                           spectrum_event(10, [0.9, 0.1], None, 1.1, name="backbone_spectrum")])
    assert {"spectrum", "backbone_spectrum", "alpha_req", "rankme", "backbone_rankme"} <= update.metrics
    assert "backbone_alpha_req" not in ledger.series  # alpha None (collapsed) adds no point
    steps, matrix = ledger.spectra["spectrum"].matrix()
    assert steps.tolist() == [1, 10] and matrix.shape == (2, 4) and math.isnan(matrix[0, 3])
    assert ledger.get("alpha_req").values.tolist() == [1.5, 1.2]
    assert ledger.get("rankme").steps.tolist() == [1, 10]
    assert "spectrum" not in ledger.series and "spectrum" not in ledger.latest


def test_resume_cut_applies_to_spectra():
    ledger = RunLedger()
    ledger.apply([spectrum_event(s, [0.6, 0.4]) for s in (1, 5, 9)])
    update = ledger.apply([{"kind": "status", "state": "resumed", "step": 5}])
    assert "spectrum" in update.metrics
    assert ledger.spectra["spectrum"].steps == [1, 5]
    assert ledger.get("rankme").steps.tolist() == [1, 5]


def test_spectrum_series_is_bounded_and_keeps_the_latest():
    s = SpectrumSeries(max_readings=8)
    for step in range(100):
        s.append(step, [1.0, float("inf")])
    assert len(s) <= 8 and s.steps[-1] == 99 and s.steps[0] == 0
    assert math.isnan(s.values[-1][1])
    with pytest.raises(ValueError):
        SpectrumSeries(1)


def test_trainer_emits_spectrum_events_every_n_steps(tmp_path):
    run = make_run(tmp_path, eval={"spectrum_every_steps": 4})
    assert run_training(run, echo=False) == 0
    events = read_events(run / "events.jsonl")
    spectra = [e for e in events if e["kind"] == "metric" and e.get("name") == "spectrum"]
    backbone = [e for e in events if e["kind"] == "metric" and e.get("name") == "backbone_spectrum"]
    assert [e["step"] for e in spectra] == [1, 4, 8]  # 8 steps: 2 epochs of 4
    assert len(backbone) == len(spectra)
    first = spectra[0]
    assert 1 <= len(first["values"]) <= 64 and abs(sum(first["values"]) - 1.0) < 0.05
    assert "value" not in first and first["rankme"] > 0
    assert "spectrum" not in metric_series(events)  # the curves skip it
    ledger = RunLedger()
    ledger.apply(events)
    assert len(ledger.spectra["spectrum"]) == 3 and ledger.get("rankme").n == 3


def test_spectrum_off(tmp_path):
    run = make_run(tmp_path, eval={"spectrum_every_steps": 0})
    assert run_training(run, echo=False) == 0
    assert not [e for e in read_events(run / "events.jsonl") if e.get("name") == "spectrum"]
