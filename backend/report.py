"""A self-contained HTML report comparing runs: :func:`write_report` (run directories -> one file).

The file needs no network and no library: inline CSS, plots as inline SVG drawn by
:mod:`backend.report_svg`, and a few lines of inline JS (click a legend entry to hide or show a run's
curves; it marks ``<html data-drawn="N">`` once run, N = number of plots). Sections: the runs and
their colours; the config fields that differ across runs (plus method, backbone, data); overlaid
curves of :data:`CURVE_METRICS`; final metrics (last/best online kNN and every stored evaluation
with its parameters, the final RankMe / alpha-ReQ); the eigenvalue spectrum heatmap per run
(:mod:`backend.report_spectrum`); collapse diagnostics (minimum ``embedding_std`` and effective rank against
the trainer's own thresholds from :mod:`backend.collapse`); an embedding scatter per run whose
``inspect/*.h5`` cache holds a 2-D projection. All text is HTML-escaped.

Reading a run lives in :func:`read_run` alone (today: the public functions of :mod:`backend.runs`),
so a later run ledger can replace it in one place. This module imports no torch itself; the
collapse section imports :mod:`backend.collapse`, which (today) imports torch at module level.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from html import escape
from pathlib import Path

import numpy as np

from .errors import ConfigError
from .report_spectrum import FINAL_COLUMNS, final_cells, spectrum_readings, spectrum_section
from .report_svg import colour, fmt, line_plot, scatter_plot

CURVE_METRICS = ("loss", "knn_top1", "alignment", "uniformity", "embedding_std", "effective_rank")
ALWAYS_FIELDS = ("method.name", "model.backbone", "data.source")  # shown even when equal
EVAL_COLUMNS = ("kind", "source", "checkpoint", "top1", "top5", "top5_k")
EVAL_HIDDEN = {"time", "confusion", "class_names", "per_class"}  # bulky or not a parameter
INSPECT_DIR = "inspect"  # backend.inspect.embeddings.INSPECT_DIR (that module imports torch)


@dataclass
class RunView:
    """What the report needs of one run."""

    run_dir: Path
    label: str
    config: dict                                    # the resolved config, nested (to_dict)
    metrics: dict                                   # name -> {"step": array, "value": array}
    evaluations: list = field(default_factory=list)
    events: list = field(default_factory=list)
    state: str = "?"
    embedding: dict | None = None                   # {"xy", "labels", "class_names", "projection", "source"}


def read_run(run_dir) -> RunView:
    """Everything the report shows of one run, read through :mod:`backend.runs` (the one place to
    swap for a run ledger). ConfigError when ``run_dir`` is not a readable run."""
    from .runs import load_metrics, read_evaluations, read_run_config, run_events, summarize_run

    run_dir = Path(run_dir)
    cfg = read_run_config(run_dir)
    return RunView(run_dir=run_dir, label=cfg.name or run_dir.name, config=cfg.to_dict(),
                   metrics=load_metrics(run_dir), evaluations=read_evaluations(run_dir),
                   events=run_events(run_dir), state=summarize_run(run_dir).state,
                   embedding=cached_projection(run_dir))


def cached_projection(run_dir) -> dict | None:
    """The 2-D projection in the newest ``<run>/inspect/*.h5`` embedding cache that has one
    (its first projection by name), or None. Damaged files are skipped."""
    import h5py

    files = sorted(Path(run_dir, INSPECT_DIR).glob("*.h5"), key=lambda p: p.stat().st_mtime, reverse=True)
    for path in files:
        try:
            with h5py.File(path, "r") as fh:
                if "projections" not in fh or not len(fh["projections"]):
                    continue
                key = sorted(fh["projections"])[0]
                xy = np.asarray(fh["projections"][key][()], dtype=np.float64)
                labels = np.asarray(fh["labels"][()], dtype=np.int64) if "labels" in fh else None
                names = json.loads(fh.attrs.get("class_names", "[]"))
                source = f"{fh.attrs.get('feature_source', '?')} features of {fh.attrs.get('split', '?')}"
        except (OSError, KeyError, ValueError):
            continue
        if xy.ndim == 2 and xy.shape[1] == 2 and (labels is None or len(labels) == len(xy)):
            return {"xy": xy, "labels": labels, "class_names": [str(n) for n in names],
                    "projection": key, "source": f"{source} split, {path.name}, {len(xy)} points"}
    return None


def flatten(config: dict, prefix: str = "") -> dict:
    """Nested dict -> {"a.b.c": value}."""
    out = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def config_diff(configs: list[dict]) -> list[str]:
    """Field paths for the diff table: :data:`ALWAYS_FIELDS`, then every other field whose value
    differs across ``configs`` (nested dicts), sorted."""
    flat = [flatten(c) for c in configs]
    keys = sorted(set().union(*flat)) if flat else []
    differing = [k for k in keys if k not in ALWAYS_FIELDS
                 and len({json.dumps(f.get(k), sort_keys=True) for f in flat}) > 1]
    return list(ALWAYS_FIELDS) + differing


def _value_text(value) -> str:
    if value is None:
        return "(unset)"
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)


def _table(header: list[str], rows: list[list[str]], cls: str, row_attrs: list[str] | None = None) -> str:
    """An HTML table; ``header`` and cells are plain text (escaped here)."""
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = []
    for i, row in enumerate(rows):
        attrs = row_attrs[i] if row_attrs else ""
        body.append(f"<tr{attrs}>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>")
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def _series(run: RunView, name: str) -> tuple[np.ndarray, np.ndarray]:
    cols = run.metrics.get(name)
    if not cols:
        return np.zeros(0), np.zeros(0)
    return np.asarray(cols["step"], dtype=np.float64), np.asarray(cols["value"], dtype=np.float64)


def _last(values: np.ndarray):
    finite = values[np.isfinite(values)]
    return float(finite[-1]) if finite.size else None


def _runs_section(runs: list[RunView]) -> str:
    items = "".join(f'<li class="run-chip" data-run="run{i}"><span class="swatch" style="background:{colour(i)}">'
                    f'</span><b>{escape(r.label)}</b> <code>{escape(r.run_dir.name)}</code> '
                    f'<span class="state">{escape(r.state)}</span></li>' for i, r in enumerate(runs))
    return f'<section id="runs"><h2>Runs</h2><ul class="legend-list">{items}</ul></section>'


def _config_section(runs: list[RunView]) -> str:
    fields = config_diff([r.config for r in runs])
    flat = [flatten(r.config) for r in runs]
    rows = [[k] + [_value_text(f.get(k)) for f in flat] for k in fields]
    attrs = [f' data-field="{escape(k)}" class="{"always" if k in ALWAYS_FIELDS else "differs"}"' for k in fields]
    note = "" if len(fields) > len(ALWAYS_FIELDS) else "<p>No other config field differs.</p>"
    table = _table(["field"] + [r.label for r in runs], rows, "config-diff", attrs)
    return f'<section id="config"><h2>Configuration differences</h2>{table}{note}</section>'


def _curves_section(runs: list[RunView]) -> str:
    plots, missing = [], []
    for name in CURVE_METRICS:
        if not any(name in r.metrics for r in runs):
            missing.append(name)
            continue
        series = []
        for i, r in enumerate(runs):
            x, y = _series(r, name)
            series.append({"label": r.label, "colour": colour(i), "key": f"run{i}", "x": x, "y": y})
        plots.append(f'<figure data-metric="{escape(name)}">{line_plot(name, series)}</figure>')
    note = f"<p>No run recorded: {escape(', '.join(missing))}.</p>" if missing else ""
    return f'<section id="curves"><h2>Curves</h2><div class="grid">{"".join(plots)}</div>{note}</section>'


def _final_section(runs: list[RunView], spectra: list[tuple[dict, dict]]) -> str:
    summary = []
    for r, (_, finals) in zip(runs, spectra):
        _, knn = _series(r, "knn_top1")
        _, loss = _series(r, "loss")
        finite = knn[np.isfinite(knn)]
        last_step = max((int(c["step"][-1]) for c in r.metrics.values() if len(c["step"])), default=0)
        summary.append([r.label, r.state, str(last_step), fmt(_last(knn)),
                        fmt(float(finite.max()) if finite.size else None), fmt(_last(loss))] + final_cells(finals))
    table = _table(["run", "state", "last step", "last kNN top-1", "best kNN top-1", "last loss"]
                   + [f"final {label}" for _, label in FINAL_COLUMNS], summary, "final-metrics")
    rows = []
    for r in runs:
        for ev in r.evaluations:
            params = ", ".join(f"{k}={fmt(v) if isinstance(v, float) else _value_text(v)}" for k, v in ev.items()
                               if k not in EVAL_COLUMNS and k not in EVAL_HIDDEN
                               and isinstance(v, (str, int, float, bool)))
            rows.append([r.label] + [fmt(ev.get(k)) if k.startswith("top") else _value_text(ev.get(k, ""))
                                     for k in EVAL_COLUMNS] + [params])
    evals = (_table(["run", "kind", "source", "checkpoint", "top-1", "top-5", "top-5 k", "parameters"],
                    rows, "evaluations") if rows else "<p>No stored evaluations (evaluations.jsonl).</p>")
    return (f'<section id="final"><h2>Final metrics</h2>{table}<h3>Evaluations</h3>{evals}</section>')


def _projector_dim(config: dict) -> int:
    """Width D of the projector output the probe metrics are taken on (DINO: its head's out_dim)."""
    if config["method"]["name"] == "dino":
        return int(config["method"]["out_dim"])
    return int(config["model"]["projector_out_dim"])


def _collapse_section(runs: list[RunView]) -> str:
    from .collapse import STD_FRACTION, collapse_reasons, rank_threshold

    rows = []
    for r in runs:
        dim, probe = _projector_dim(r.config), int(r.config["eval"]["probe_batch_size"])
        cells = [r.label]
        minima = []
        for name in ("embedding_std", "effective_rank"):
            steps, values = _series(r, name)
            ok = np.isfinite(values)
            if ok.any():
                i = int(np.argmin(np.where(ok, values, np.inf)))
                minima.append(float(values[i]))
                cells.append(f"{fmt(values[i])} (step {int(steps[i])})")
            else:
                minima.append(float("nan"))
                cells.append("-")
        cells.insert(2, fmt(STD_FRACTION / dim ** 0.5))
        cells.append(fmt(rank_threshold(probe, dim)))
        reasons = collapse_reasons(minima[0], minima[1], dim, probe)
        warned = [e for e in r.events if e.get("kind") == "log" and e.get("warning") == "collapse"]
        verdict = "; ".join(reasons) if reasons else ("no data" if all(np.isnan(minima)) else "healthy")
        if warned:
            verdict += f" | trainer warned {len(warned)}x, first at step {warned[0].get('step', '?')}"
        rows.append(cells + [verdict])
    header = ["run", "min embedding_std", "collapse below", "min effective rank", "collapse below", "verdict"]
    note = ("<p>Thresholds are the trainer's (backend.collapse): embedding_std below "
            f"{STD_FRACTION}/sqrt(D) (D = projector output width), effective rank below min(floor, share "
            "x min(probe batch, D)). Minima over the whole run; a brief dip early in training is common.</p>")
    return f'<section id="collapse"><h2>Collapse diagnostics</h2>{_table(header, rows, "collapse")}{note}</section>'


def _embedding_section(runs: list[RunView]) -> str:
    figures = []
    for r in runs:
        if r.embedding is None:
            continue
        e = r.embedding
        svg = scatter_plot(f"{r.label}: {e['projection']}", e["xy"], e["labels"], e["class_names"])
        figures.append(f'<figure class="embedding">{svg}<figcaption>{escape(e["source"])}</figcaption></figure>')
    body = "".join(figures) or "<p>No run has a cached 2-D embedding projection (inspect/*.h5).</p>"
    return f'<section id="embeddings"><h2>Embeddings</h2><div class="grid">{body}</div></section>'


CSS = """
body{font-family:system-ui,sans-serif;margin:24px;color:#222;background:#fff}
h1{font-size:22px}p{font-size:13px}.top{display:flex;gap:48px;align-items:flex-start}h2{font-size:18px;border-bottom:1px solid #ccc;padding-bottom:4px;margin-top:28px}
table{border-collapse:collapse;font-size:13px;margin:8px 0}td,th{border:1px solid #ccc;padding:2px 8px;
text-align:left;vertical-align:top}th{background:#f2f2f2}tr.always td:first-child{font-style:italic}
.grid{display:flex;flex-wrap:wrap;gap:12px}figure{margin:0}figcaption{font-size:12px;color:#555;max-width:380px}
.legend-list{list-style:none;padding:0}.legend-list li{margin:3px 0;cursor:pointer}
.swatch{display:inline-block;width:12px;height:12px;margin-right:6px;vertical-align:middle}
.state{color:#666;font-size:12px}svg.plot{background:#fff;border:1px solid #ddd}
svg .frame{fill:none;stroke:#999}svg .grid{stroke:#eee}svg .tick,svg .legend{font-size:10px;fill:#444}
svg .title{font-size:13px;font-weight:bold;fill:#222}svg .axis{font-size:11px;fill:#444}
svg .legend-entry{cursor:pointer}path.hidden{display:none}.muted{opacity:.4}
"""

JS = """
(function () {
  function toggle(key) {
    document.querySelectorAll('path.curve').forEach(function (p) {
      if (p.getAttribute('data-run') === key) { p.classList.toggle('hidden'); }
    });
    document.querySelectorAll('[data-run]').forEach(function (el) {
      if (el.getAttribute('data-run') === key && !el.matches('path')) { el.classList.toggle('muted'); }
    });
  }
  document.querySelectorAll('.legend-entry, .run-chip').forEach(function (el) {
    el.addEventListener('click', function () { toggle(el.getAttribute('data-run')); });
  });
  document.documentElement.setAttribute('data-drawn', String(document.querySelectorAll('svg.plot').length));
})();
"""


def _unique_labels(runs: list[RunView]) -> None:
    """Make run labels unique (the legend must tell runs apart): a shared name gets the run id,
    and a label still shared after that gets its position."""
    names = [r.label for r in runs]
    for r in runs:
        if names.count(r.label) > 1:
            r.label = f"{r.label} ({r.run_dir.name})"
    seen: dict[str, int] = {}
    for i, r in enumerate(runs):
        seen[r.label] = seen.get(r.label, 0) + 1
        if seen[r.label] > 1:
            r.label = f"{r.label} #{i + 1}"


def render_report(runs: list[RunView], title: str = "Run comparison") -> str:
    """The report's HTML text for already-read runs."""
    _unique_labels(runs)
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    spectra = [spectrum_readings(r.events) for r in runs]
    sections = [f'<div class="top">{_runs_section(runs)}{_config_section(runs)}</div>', _curves_section(runs),
                _final_section(runs, spectra), spectrum_section(runs, spectra), _collapse_section(runs),
                _embedding_section(runs)]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{escape(title)}</title><style>{CSS}</style></head><body>"
            f"<h1>{escape(title)}</h1><p class=\"state\">{len(runs)} runs, generated {stamp} by SSL Workbench.</p>"
            + "".join(sections) + f"<script>{JS}</script></body></html>\n")


def write_report(run_dirs, out_path, title: str = "Run comparison") -> Path:
    """Write one self-contained HTML file comparing ``run_dirs`` to ``out_path`` (atomically) and
    return its path. ConfigError when no run is given or a directory is not a readable run."""
    run_dirs = [Path(p) for p in run_dirs]
    if not run_dirs:
        raise ConfigError("write_report needs at least one run directory")
    runs = [read_run(p) for p in run_dirs]
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    tmp.write_text(render_report(runs, title), encoding="utf-8")
    os.replace(tmp, out)
    return out
