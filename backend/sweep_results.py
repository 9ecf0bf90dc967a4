"""What a sweep came to: the sweeps of a workspace, one result row per run (its point, state,
final online kNN top-1 and linear-probe top-1) and the kNN grid of a two-field sweep.

Read from the runs' own files (meta.json's ``sweep`` tag, events.jsonl, evaluations.jsonl), so
the GUI's sweep view and any script see the same numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from .run_meta import read_meta
from .runs import read_evaluations, runs_root, summarize_run


@dataclass
class SweepInfo:
    """One sweep of a workspace: its id, name, fields and run dirs in point order."""

    id: str
    name: str = ""
    fields: list = field(default_factory=list)
    run_dirs: list = field(default_factory=list)


@dataclass
class SweepRow:
    """One run of a sweep: its point, state, final kNN top-1 and linear-probe top-1 (None if absent)."""

    run_dir: Path
    run_id: str
    point: dict
    state: str
    knn: float | None = None
    linear_probe: float | None = None


def list_sweeps(workspace) -> list[SweepInfo]:
    """Every sweep with a run in ``<workspace>/runs``, newest first (sweep ids begin with their date)."""
    root = runs_root(workspace)
    found: dict[str, tuple[SweepInfo, list]] = {}
    for run_dir in sorted(root.iterdir()) if root.is_dir() else ():
        sweep = read_meta(run_dir).get("sweep") if run_dir.is_dir() else None
        if not isinstance(sweep, dict) or not sweep.get("id"):
            continue
        info, members = found.setdefault(sweep["id"], (SweepInfo(sweep["id"], sweep.get("name") or ""), []))
        members.append((sweep.get("index", 0), run_dir))
        for name in sweep.get("point") or {}:
            if name not in info.fields:
                info.fields.append(name)
    out = []
    for info, members in found.values():
        info.run_dirs = [d for _, d in sorted(members, key=lambda m: (m[0], str(m[1])))]
        out.append(info)
    return sorted(out, key=lambda s: s.id, reverse=True)


def final_knn(run_dir) -> float | None:
    """The run's last online kNN top-1 (``knn_top1`` metric), or None."""
    from .ledger import fold
    from .runs import run_events

    value = fold(run_events(run_dir), keep_series=False).latest.get("knn_top1")
    return None if value is None or not math.isfinite(value) else float(value)


def final_linear_probe(run_dir) -> float | None:
    """Top-1 of the run's latest linear probe on all the labels (evaluations.jsonl), or None."""
    found = [r for r in read_evaluations(run_dir)
             if r.get("kind") == "linear_probe" and r.get("label_fraction", 1.0) in (None, 1, 1.0)]
    return float(found[-1]["top1"]) if found and isinstance(found[-1].get("top1"), (int, float)) else None


def sweep_row(run_dir) -> SweepRow:
    """The result row of one sweep run."""
    run_dir = Path(run_dir)
    sweep = read_meta(run_dir).get("sweep") or {}
    return SweepRow(run_dir, run_dir.name, dict(sweep.get("point") or {}), summarize_run(run_dir).state,
                    final_knn(run_dir), final_linear_probe(run_dir))


def _distinct(values) -> list:
    out = []
    for v in values:
        if v not in out:
            out.append(v)
    try:
        return sorted(out)
    except TypeError:  # mixed types: the order they came in
        return out


def is_grid(rows: list[SweepRow], fields: list[str]) -> bool:
    """Whether the rows' points are exactly the cartesian product of their values per field."""
    if not rows or not fields:
        return False
    sizes = [len(_distinct(r.point.get(f) for r in rows)) for f in fields]
    keys = {tuple(repr(r.point.get(f)) for f in fields) for r in rows}
    return len(keys) == len(rows) == math.prod(sizes)


def knn_grid(rows: list[SweepRow], x_field: str, y_field: str | None = None, metric: str = "knn"):
    """(x values, y values, matrix) of a two-field grid: ``matrix[j][i]`` is ``metric`` (``knn`` or
    ``linear_probe``) of the run at (x values[i], y values[j]); NaN where the run has none yet.
    ``y_field`` None: a one-field sweep, a single row (y values ``[None]``)."""
    if metric not in ("knn", "linear_probe"):
        raise ValueError(f"unknown sweep metric {metric!r} (knn or linear_probe)")
    xs = _distinct(r.point.get(x_field) for r in rows)
    ys = _distinct(r.point.get(y_field) for r in rows) if y_field else [None]
    matrix = [[math.nan] * len(xs) for _ in ys]
    for r in rows:
        value = getattr(r, metric)
        if value is not None:
            y = r.point.get(y_field) if y_field else None
            matrix[ys.index(y)][xs.index(r.point.get(x_field))] = float(value)
    return xs, ys, matrix
