"""Sweeps: a grid or random sample of dotted-field overrides, one run per point, all enqueued.

A point is a flat ``{"optim.lr": 0.1, "optim.batch_size": 64}``; :func:`point_overrides` turns it
into nested overrides (via :func:`backend.config.parse_override` / ``deep_merge``). Every point is
validated before any run directory is made, so a bad point refuses the whole sweep.
"""

from __future__ import annotations

import itertools
import math
import random
import re
import secrets
import time
from pathlib import Path

from .config import ExperimentConfig, deep_merge, parse_override
from .errors import ConfigError
from .run_meta import update_meta
from .run_queue import RunQueue
from .runs import create_run


def expand_grid(fields: dict[str, list]) -> list[dict]:
    """The cartesian product of ``{field: [values]}`` as flat points, the first field varying slowest."""
    for name, values in fields.items():
        if not isinstance(values, (list, tuple)) or not values:
            raise ConfigError(f"sweep grid field {name}: needs a non-empty list of values, got {values!r}")
    names = list(fields)
    return [dict(zip(names, combo)) for combo in itertools.product(*(fields[n] for n in names))]


def _range_spec(name: str, spec: str) -> tuple[str, float, float]:
    parts = spec.split(":")
    if len(parts) != 3 or parts[0] not in ("uniform", "log-uniform"):
        raise ConfigError(f"sweep space field {name}: {spec!r} is not 'uniform:LO:HI' or 'log-uniform:LO:HI'")
    try:
        lo, hi = float(parts[1]), float(parts[2])
    except ValueError:
        raise ConfigError(f"sweep space field {name}: bounds of {spec!r} are not numbers") from None
    if not lo < hi:
        raise ConfigError(f"sweep space field {name}: needs LO < HI in {spec!r}")
    if parts[0] == "log-uniform" and lo <= 0:
        raise ConfigError(f"sweep space field {name}: log-uniform needs LO > 0 in {spec!r}")
    return parts[0], lo, hi


def sample_random(space: dict, n: int, seed: int = 0) -> list[dict]:
    """``n`` random points of ``space``: per field a list of choices (uniform pick) or a string
    ``uniform:LO:HI`` / ``log-uniform:LO:HI`` (a float). Same seed, same points."""
    if n < 1:
        raise ConfigError(f"sweep: --random needs at least 1 point, got {n}")
    specs = {}
    for name, spec in space.items():
        if isinstance(spec, str):
            specs[name] = _range_spec(name, spec)
        elif isinstance(spec, (list, tuple)) and spec:
            specs[name] = ("choice", list(spec))
        else:
            raise ConfigError(f"sweep space field {name}: needs a list of choices or a range, got {spec!r}")
    rng = random.Random(seed)
    points = []
    for _ in range(n):
        point = {}
        for name, spec in specs.items():
            if spec[0] == "choice":
                point[name] = rng.choice(spec[1])
            elif spec[0] == "uniform":
                point[name] = rng.uniform(spec[1], spec[2])
            else:
                point[name] = math.exp(rng.uniform(math.log(spec[1]), math.log(spec[2])))
        points.append(point)
    return points


def parse_values(text: str) -> list:
    """'0.1,0.2' -> [0.1, 0.2] (each parsed like a --set value: TOML when possible, else a string)."""
    return [parse_override(f"v={item.strip()}")["v"] for item in text.split(",") if item.strip()]


def point_overrides(point: dict) -> dict:
    """A flat point {"a.b": v} as nested overrides {"a": {"b": v}}."""
    out: dict = {}
    for name, value in point.items():
        leaf: dict = {}
        node = leaf
        parts = name.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
        out = deep_merge(out, leaf)
    return out


def _point_config(base: dict, point: dict) -> ExperimentConfig:
    """The config of one point, or a ConfigError naming the point and its bad fields."""
    try:
        return ExperimentConfig.from_dict(deep_merge(base, point_overrides(point)))
    except ConfigError as exc:
        raise ConfigError([f"sweep point {point}: {e}" for e in exc.errors]) from None


def new_sweep_id(name: str = "") -> str:
    """A readable unique sweep id: date-time, name, 4 random hex digits."""
    slug = "".join(c if c.isalnum() or c in "-_." else "-" for c in name).strip("-")[:30]
    return "-".join(p for p in (time.strftime("%Y%m%d-%H%M%S"), slug, secrets.token_hex(2)) if p)


def create_sweep(workspace, base_cfg: ExperimentConfig, points: list[dict], name: str = "",
                 device: str | None = None) -> list[Path]:
    """One run per point under ``<workspace>/runs``, each tagged in its meta.json with the sweep
    (``sweep`` = {"id", "name", "index", "point"}) and enqueued in ``<workspace>/queue.json``
    (device: ``device`` or the config's ``runtime.device``). Every point is validated first: a bad
    one raises ConfigError (naming the point and the field) and nothing is created."""
    if not points:
        raise ConfigError("sweep: no points to run")
    device = device or base_cfg.runtime.device
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", device):
        raise ConfigError(f"sweep: device must be auto, cpu, cuda or cuda:N, got {device!r}")
    base = base_cfg.to_dict()
    configs = [_point_config(base, p) for p in points]
    sweep_id = new_sweep_id(name or base_cfg.name)
    queue = RunQueue(workspace)
    run_dirs = []
    for i, (point, cfg) in enumerate(zip(points, configs)):
        if not cfg.name:
            cfg.name = f"{name or 'sweep'}-{i}"
        run_dir = create_run(workspace, cfg)
        update_meta(run_dir, sweep={"id": sweep_id, "name": name, "index": i, "point": point},
                    tags=[f"sweep:{sweep_id}"])
        run_dirs.append(run_dir)
    queue.enqueue(run_dirs, device=device)
    return run_dirs


def sweep_runs(workspace, sweep_id: str) -> list[Path]:
    """The run dirs of one sweep (meta.json's ``sweep.id``), in point order."""
    from .run_meta import read_meta
    from .runs import runs_root

    root = runs_root(workspace)
    found = []
    for run_dir in (root.iterdir() if root.is_dir() else ()):
        sweep = read_meta(run_dir).get("sweep") or {}
        if isinstance(sweep, dict) and sweep.get("id") == sweep_id:
            found.append((sweep.get("index", 0), run_dir))
    return [d for _, d in sorted(found)]
