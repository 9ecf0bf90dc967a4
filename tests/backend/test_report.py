"""The comparison report: three fake finished runs -> one self-contained, escaped HTML file."""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from backend.config import ExperimentConfig
from backend.errors import ConfigError
from backend.events import EventWriter
from backend.report import CURVE_METRICS, config_diff, write_report
from backend.runs import create_run, record_evaluation

CHROMIUM = "/usr/bin/chromium"
NASTY = 'gamma <b>&"x"</b>'
RUNS = {
    "alpha": {"name": "alpha", "method": {"name": "simclr"}},
    "beta": {"name": "beta", "method": {"name": "byol"}, "optim": {"lr": 0.2}},
    "gamma": {"name": NASTY, "method": {"name": "simclr"}, "optim": {"batch_size": 128},
              "model": {"backbone": "tiny_cnn"}},
}
# SimCLR and BYOL declare different [method] fields (temperature vs the EMA momenta): a field
# that only some runs have differs too.
EXPECTED_FIELDS = {"method.name", "model.backbone", "data.source", "name", "optim.lr", "optim.batch_size",
                   "method.temperature", "method.momentum", "method.momentum_final", "method.projector_last_bn"}


def fake_run(workspace, key, overrides, collapsed=False):
    run = create_run(workspace, ExperimentConfig.from_dict(overrides), run_id=key)
    w = EventWriter(run / "events.jsonl", echo=False)
    w.status("running")
    i = list(RUNS).index(key)
    for step in range(1, 41):
        t = step / 40
        w.metric("loss", 2 + 3 * (1 - t) ** (1 + i) + (0.1 if key == "beta" else 0), step, step // 20)
        w.metric("alignment", 1.2 - (0.5 - 0.1 * i) * t, step, step // 20)
        w.metric("uniformity", -1 - (2 - 0.4 * i) * math.sqrt(t), step, step // 20)
        w.metric("embedding_std", 1e-4 if collapsed and step > 10 else 0.06 + 0.01 * i * t, step, step // 20)
        w.metric("effective_rank", 1.2 if collapsed and step > 10 else 20 + (10 - 3 * i) * t, step, step // 20)
        if step % 10 == 0:
            w.metric("knn_top1", 0.2 + 0.3 * t ** (1 + i / 2) + (0.05 if key == "gamma" else 0), step, step // 20)
    if collapsed:
        w.log("representation collapse suspected at step 12", level="warning", warning="collapse", step=12)
    w.status("finished", "done", step=40, epoch=2)
    w.close()
    record_evaluation(run, {"kind": "knn", "source": "online", "top1": 0.5, "k": 200, "temperature": 0.1,
                            "features": "backbone", "checkpoint": "last.pt"})
    record_evaluation(run, {"kind": "linear_probe", "source": "checkpoint", "top1": 0.61, "top5": 0.9,
                            "top5_k": 5, "confusion": [[1, 0], [0, 1]], "class_names": ["a", "b"],
                            "epochs": 100, "lr": 1.0, "checkpoint": "last.pt"})
    record_evaluation(run, {"kind": "finetune", "source": "checkpoint", "top1": 0.7, "epochs": 5,
                            "backbone_lr_scale": 0.1, "checkpoint": "last.pt"})
    return run


def add_embedding_cache(run):
    from backend.inspect.embeddings import EmbeddingSet, _write_cache

    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 50)
    xy = (rng.normal(size=(150, 2)) + labels[:, None] * 4).astype(np.float32)
    es = EmbeddingSet(features=rng.normal(size=(150, 8)).astype(np.float32), labels=labels,
                      indices=np.arange(150), class_names=["cat", "dog", "<ship>"], checkpoint="last.pt",
                      split="test", path=run / "inspect" / "last-test-backbone-0.h5",
                      projections={"pca-0": xy})
    _write_cache(es, "fingerprint", "{}")


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    ws = tmp_path_factory.mktemp("ws")
    runs = [fake_run(ws, key, cfg, collapsed=key == "beta") for key, cfg in RUNS.items()]
    add_embedding_cache(runs[0])
    out = write_report(runs, ws / "out" / "report.html", title="Compare <runs>")
    return out, out.read_text(encoding="utf-8")


class Collector(HTMLParser):
    """Tables (rows of cell text, row attrs), SVGs (paths, legend texts, circles), every attribute."""

    def __init__(self):
        super().__init__()
        self.stack, self.attrs, self.tables, self.svgs, self.text = [], [], {}, [], []
        self.table = self.row = self.cell = self.svg = None
        self.in_legend = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.attrs.append((tag, a))
        if tag == "table":
            self.table = self.tables.setdefault(a.get("class", ""), [])
        elif tag == "tr" and self.table is not None:
            self.row = {"attrs": a, "cells": []}
            self.table.append(self.row)
        elif tag in ("td", "th") and self.row is not None:
            self.cell = []
        elif tag == "svg":
            self.svg = {"class": a.get("class", ""), "paths": [], "legend": [], "circles": 0, "title": ""}
            self.svgs.append(self.svg)
        elif tag == "path" and self.svg is not None:
            self.svg["paths"].append(a.get("data-run"))
        elif tag == "circle" and self.svg is not None:
            self.svg["circles"] += 1
        elif tag == "text" and self.svg is not None:
            self.in_legend = a.get("class")
            self.text_buf = []

    def handle_endtag(self, tag):
        if tag == "table":
            self.table = None
        elif tag in ("td", "th") and self.cell is not None:
            self.row["cells"].append("".join(self.cell))
            self.cell = None
        elif tag == "svg":
            self.svg = None
        elif tag == "text" and self.svg is not None:
            text = "".join(self.text_buf)
            if self.in_legend == "legend":
                self.svg["legend"].append(text)
            elif self.in_legend == "title":
                self.svg["title"] = text
            self.in_legend = None

    def handle_data(self, data):
        self.text.append(data)
        if self.cell is not None:
            self.cell.append(data)
        if self.svg is not None and self.in_legend:
            self.text_buf.append(data)


def parse(text):
    c = Collector()
    c.feed(text)
    return c


def test_diff_table_holds_exactly_the_differing_fields(report):
    c = parse(report[1])
    rows = c.tables["config-diff"]
    header, body = rows[0]["cells"], rows[1:]
    assert header == ["field", "alpha", "beta", NASTY]
    assert {r["attrs"]["data-field"] for r in body} == EXPECTED_FIELDS
    by_field = {r["cells"][0]: r["cells"][1:] for r in body}
    assert by_field["optim.lr"] == ["0.06", "0.2", "0.06"] and by_field["method.name"] == ["simclr", "byol", "simclr"]
    assert by_field["data.source"] == ["synthetic"] * 3  # always shown, though equal


def test_config_diff_of_identical_configs_is_the_fixed_fields():
    cfg = ExperimentConfig().to_dict()
    assert config_diff([cfg, cfg]) == ["method.name", "model.backbone", "data.source"]


def test_every_curve_has_a_path_per_run_and_a_legend_of_every_run(report):
    c = parse(report[1])
    curves = [s for s in c.svgs if s["class"] == "plot"]
    assert [s["title"] for s in curves] == list(CURVE_METRICS)
    for svg in curves:
        assert svg["paths"] == ["run0", "run1", "run2"], svg["title"]
        assert svg["legend"] == ["alpha", "beta", NASTY]


def test_final_metrics_evaluations_and_collapse(report):
    c = parse(report[1])
    final = {r["cells"][0]: r["cells"] for r in c.tables["final-metrics"][1:]}
    assert final["alpha"][1:6] == ["finished", "40", "0.5", "0.5", "2"]
    assert final["alpha"][6:] == ["-"] * 4  # no spectrum events: no RankMe / alpha-ReQ
    assert final[NASTY][3] == "0.55"
    evals = c.tables["evaluations"][1:]
    assert len(evals) == 9 and {r["cells"][1] for r in evals} == {"knn", "linear_probe", "finetune"}
    probe = next(r["cells"] for r in evals if r["cells"][1] == "linear_probe")
    assert probe[4:7] == ["0.61", "0.9", "5"] and "epochs=100" in probe[7] and "confusion" not in probe[7]
    collapse = {r["cells"][0]: r["cells"] for r in c.tables["collapse"][1:]}
    assert collapse["alpha"][-1] == "healthy"
    assert collapse["beta"][1] == "0.0001 (step 11)" and collapse["beta"][2] == "0.008839"  # 0.1/sqrt(128)
    assert collapse["beta"][4] == "3.5"
    assert "embedding_std" in collapse["beta"][-1] and "trainer warned 1x, first at step 12" in collapse["beta"][-1]


def test_embedding_scatter_for_the_run_with_a_cached_projection(report):
    c = parse(report[1])
    (scatter,) = [s for s in c.svgs if "scatter" in s["class"]]
    assert scatter["circles"] == 150 and scatter["legend"] == ["cat", "dog", "<ship>"]
    assert scatter["title"] == "alpha: pca-0"
    assert "backbone features of test split, last-test-backbone-0.h5, 150 points" in report[1]


def test_self_contained_and_escaped(report):
    path, text = report
    assert "http:" not in text and "https:" not in text and "url(" not in text
    c = parse(text)
    for tag, attrs in c.attrs:
        assert "src" not in attrs and "href" not in attrs, (tag, attrs)
        assert tag not in ("link", "img", "iframe", "object", "embed")
    assert NASTY not in text and "<ship>" not in text and "<runs>" not in text  # escaped everywhere
    assert NASTY in "".join(c.text)
    assert not [p for p in path.parent.iterdir() if p.name != "report.html"]  # no temp left behind


def test_bad_input_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="at least one run"):
        write_report([], tmp_path / "r.html")
    with pytest.raises(ConfigError, match="config.json"):
        write_report([tmp_path], tmp_path / "r.html")


def test_report_module_imports_no_torch():
    source = Path(__file__).resolve().parents[2].joinpath("backend", "report.py").read_text()
    svg = Path(__file__).resolve().parents[2].joinpath("backend", "report_svg.py").read_text()
    assert not re.search(r"^\s*(import|from)\s+torch", source + svg, re.M)


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="needs Debian's chromium at /usr/bin/chromium")
def test_headless_chromium_renders_without_console_errors(report):
    path, text = report
    n_plots = len([s for s in parse(text).svgs])
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    try:
        proc = subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
             "--enable-logging=stderr", "--v=0", "--dump-dom", path.as_uri()],
            capture_output=True, text=True, timeout=240)
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f'data-drawn="{n_plots}"' in proc.stdout  # the inline script ran to its end
    console = [line for line in proc.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert not console, console
    assert n_plots == len(CURVE_METRICS) + 1  # six curves and one scatter


def test_runs_with_the_same_name_get_distinct_legend_labels(tmp_path):
    runs = [fake_run(tmp_path, key, {"name": "same", "method": {"name": "simclr"}}) for key in ("alpha", "beta")]
    c = parse(write_report(runs, tmp_path / "r.html").read_text())
    assert c.svgs[0]["legend"] == ["same (alpha)", "same (beta)"]


def test_a_bare_run_and_a_diverged_curve_still_render(tmp_path):
    bare = create_run(tmp_path, ExperimentConfig.from_dict({"name": "bare"}), run_id="bare")
    nan = create_run(tmp_path, ExperimentConfig.from_dict({"name": "nan"}), run_id="nan")
    w = EventWriter(nan / "events.jsonl", echo=False)
    for step, value in enumerate([3.0, 2.0, float("nan"), 1.5, 1.0], start=1):
        w.metric("loss", value, step, 0)
    w.close()
    text = write_report([bare, nan], tmp_path / "r.html").read_text()
    c = parse(text)
    (loss,) = [s for s in c.svgs if s["title"] == "loss"]
    assert loss["paths"] == ["run1"] and loss["legend"] == ["bare (no data)", "nan"]
    d = re.search(r'<path class="curve" data-run="run1" d="([^"]+)"', text).group(1)
    assert d.count("M") == 2 and "nan" not in d.lower()  # the NaN breaks the line
    assert "No run recorded: knn_top1, alignment" in text
    collapse = {r["cells"][0]: r["cells"][-1] for r in c.tables["collapse"][1:]}
    assert collapse == {"bare": "no data", "nan": "no data"}
    assert "No stored evaluations" in text and "No run has a cached 2-D embedding projection" in text
