"""The report's spectrum part: a heatmap per run with spectrum events (pixels = the events'
eigenvalues), final RankMe / alpha-ReQ equal to the last events', and a sentence for a run without."""

from __future__ import annotations

import base64
import io
import re

import numpy as np
import pytest

from backend.config import ExperimentConfig
from backend.events import EventWriter
from backend.report import write_report
from backend.report_spectrum import LOG_FLOOR, colours, png_bytes
from backend.runs import create_run

from .test_report import Collector

K = 8


def spectrum_run(workspace, key: str, offset: float):
    """Six readings (steps 0, 10, ..., 50): reading r has r + 1 equal leading eigenvalues (the
    stepwise growth of dimensionality), the others 1e-7; a projector and a backbone spectrum."""
    run = create_run(workspace, ExperimentConfig.from_dict({"name": key}), run_id=key)
    w = EventWriter(run / "events.jsonl", echo=False)
    w.status("running")
    for r in range(6):
        step = 10 * r
        values = [1.0 / (r + 1)] * (r + 1) + [1e-7] * (K - r - 1)
        w.metric("loss", 3.0 - 0.1 * r, step, 0)
        for name, shift in (("spectrum", 0.0), ("backbone_spectrum", 0.5)):
            w.emit("metric", step=step, epoch=0, name=name, values=values, dim=K, samples=64,
                   alpha=round(offset + shift + 0.1 * r, 6), alpha_range=[1, 4],
                   rankme=round(offset + shift + r + 1.25, 6))
    w.status("finished", "done", step=50, epoch=0)
    w.close()
    return run


def plain_run(workspace):
    run = create_run(workspace, ExperimentConfig.from_dict({"name": "plain"}), run_id="plain")
    w = EventWriter(run / "events.jsonl", echo=False)
    w.status("running")
    for step in range(5):
        w.metric("loss", 1.0, step, 0)
    w.status("finished", "done", step=4, epoch=0)
    w.close()
    return run


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    ws = tmp_path_factory.mktemp("ws")
    runs = [spectrum_run(ws, "one", 1.0), spectrum_run(ws, "two", 2.0), plain_run(ws)]
    out = write_report(runs, ws / "report.html")
    return out.read_text(encoding="utf-8")


def _figures(text: str) -> list[tuple[str, str, str]]:
    return re.findall(r'<figure class="spectrum" data-run="(run\d)" data-spectrum="(\w+)">(.*?)</figure>', text)


def test_one_heatmap_per_run_and_spectrum(page):
    assert '<section id="spectrum">' in page
    figures = _figures(page)
    assert [(run, name) for run, name, _ in figures] == [
        ("run0", "spectrum"), ("run0", "backbone_spectrum"), ("run1", "spectrum"), ("run1", "backbone_spectrum")]
    assert "No spectrum events (eval.spectrum_every_steps) in: plain." in page
    c = Collector()
    c.feed(page)
    assert len([s for s in c.svgs if "heatmap" in s["class"]]) == 4


def test_heatmap_pixels_are_the_events_eigenvalues(page):
    from PIL import Image

    body = _figures(page)[0][2]
    assert "6 readings, steps 0-50, top 8 eigenvalues; final RankMe 7.25, alpha-ReQ 1.5" in body
    data = re.search(r'href="data:image/png;base64,([A-Za-z0-9+/=]+)"', body).group(1)
    img = np.asarray(Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB"))
    assert img.shape[0] == K  # one row per eigenvalue index, the highest index on top
    first, last = img[:, 0], img[:, -1]
    assert (first[-1] == colours(np.log10(1.0))).all()       # step 0: one eigenvalue of 1 ...
    assert (first[:-1] == colours(LOG_FLOOR)).all()         # ... the others below the floor
    assert (last[-6:] == colours(np.log10(1 / 6))).all()    # step 50: six equal eigenvalues
    assert (last[:2] == colours(LOG_FLOOR)).all()
    middle = img[:, img.shape[1] // 2]                       # step 25: the reading of step 20
    assert (middle[-3:] == colours(np.log10(1 / 3))).all() and (middle[:-3] == colours(LOG_FLOOR)).all()


def test_final_rankme_and_alpha_match_the_last_events(page):
    c = Collector()
    c.feed(page)
    header, *rows = c.tables["final-metrics"]
    assert header["cells"][6:] == ["final RankMe", "final alpha-ReQ", "final backbone RankMe",
                                   "final backbone alpha-ReQ"]
    final = {r["cells"][0]: r["cells"][6:] for r in rows}
    # last reading r = 5: rankme = offset + shift + 6.25, alpha = offset + shift + 0.5
    assert final["one"] == ["7.25", "1.5", "7.75", "2"]
    assert final["two"] == ["8.25", "2.5", "8.75", "3"]
    assert final["plain"] == ["-"] * 4


def test_png_encoder_round_trips():
    from PIL import Image

    rgb = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(png_bytes(rgb)))), rgb)
