"""A run on show in the dashboard: its ledger, what changed since the last redraw, identity and
curves, and what its config says (label, totals, projector size)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from backend.errors import ConfigError
from backend.ledger import RunLedger
from backend.runs import read_run_config

from . import plots
from .run_state import run_label


@dataclass
class DashRun:
    """One run on show: its ledger, what changed since the last redraw, identity and curves."""

    ledger: RunLedger
    dirty: set = field(default_factory=set)         # metric names to redraw
    pending_logs: list = field(default_factory=list)  # log events not yet in the log pane
    label: str = ""
    run_dir: Path | None = None
    color: int = 0
    configured_dim: int | None = None
    probe_size: int | None = None
    title: str = ""
    bindings: dict = field(default_factory=dict)  # metric name -> [_Binding]
    plane: plots.PlaneView | None = None


def open_run(run: DashRun, run_dir: Path, color: int) -> None:
    """Name ``run`` after ``run_dir`` and read totals and the projector size from its config."""
    run.run_dir, run.label, run.color, run.title = run_dir, run_dir.name, color, run_dir.name
    try:
        cfg = read_run_config(run_dir)
    except ConfigError:
        return  # curves still show; totals and D stay unknown
    run.configured_dim = cfg.model.projector_out_dim
    run.probe_size = cfg.eval.probe_batch_size
    if not run.ledger.epochs:
        run.ledger.epochs = cfg.schedule.epochs
    run.label = run_label(cfg.name, run_dir.name)
    run.title = f"{run.label}\n{cfg.method.name} / {cfg.model.backbone} on {cfg.data.source}, " \
                f"{cfg.schedule.epochs} epochs"
