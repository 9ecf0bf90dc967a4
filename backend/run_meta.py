"""Run management, backend side: a run's notes, tags, display name and archived flag in
``<run>/meta.json`` (atomic writes; the sweep's ``sweep`` record lives there too), deleting a run
into the workspace's trash, and the config diff of several runs.

``meta.json`` keys: ``name`` (display name, "" = the config's name / the run id), ``notes`` (free
text), ``tags`` (list of strings, kept unique in order), ``archived`` (bool), ``sweep`` (set by
:func:`backend.sweep.create_sweep`: {"id", "name", "index", "point"}). Unknown keys are kept.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import time
from pathlib import Path

from .errors import ConfigError, WorkbenchError
from .run_lock import RunLock, RunLockedError, lock_holder
from .runs import CONFIG_FILE, runs_root

META_FILE = "meta.json"
TRASH_DIR = "trash"
DEFAULT_META = {"name": "", "notes": "", "tags": [], "archived": False}


def read_meta(run_dir) -> dict:
    """The run's meta.json over the defaults (missing or unreadable file: the defaults)."""
    meta = json.loads(json.dumps(DEFAULT_META))
    try:
        data = json.loads((Path(run_dir) / META_FILE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return meta
    if isinstance(data, dict):
        meta.update(data)
    return meta


def _unique(tags) -> list[str]:
    if isinstance(tags, str) or not all(isinstance(t, str) for t in tags):
        raise ConfigError(f"run tags must be a list of strings, got {tags!r}")
    out = []
    for tag in (t.strip() for t in tags):
        if tag and tag not in out:
            out.append(tag)
    return out


def update_meta(run_dir, **fields) -> dict:
    """Merge ``fields`` into meta.json (``tags`` are added to the existing ones; use
    :func:`set_tags` to replace) and write it atomically; returns the new meta."""
    run_dir = Path(run_dir)
    if not (run_dir / CONFIG_FILE).exists():
        raise ConfigError(f"{run_dir} is not a run directory (no {CONFIG_FILE})")
    meta = read_meta(run_dir)
    if "tags" in fields:
        fields["tags"] = _unique(list(meta.get("tags", [])) + list(_unique(fields["tags"])))
    meta.update(fields)
    _write_json(run_dir / META_FILE, meta)
    return meta


def _write_json(path: Path, data) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(3)}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def set_notes(run_dir, notes: str) -> dict:
    """Replace the run's notes."""
    return update_meta(run_dir, notes=str(notes))


def set_display_name(run_dir, name: str) -> dict:
    """Set the name shown for the run ("" = back to the config's name / run id)."""
    return update_meta(run_dir, name=str(name).strip())


def set_tags(run_dir, tags) -> dict:
    """Replace the run's tags (unique, order kept, blanks dropped)."""
    run_dir = Path(run_dir)
    meta = update_meta(run_dir)
    meta["tags"] = _unique(list(tags))
    _write_json(run_dir / META_FILE, meta)
    return meta


def archive_run(run_dir, archived: bool = True) -> dict:
    """Mark (or unmark) the run as archived: hidden by default in the runs browser, nothing deleted."""
    return update_meta(run_dir, archived=bool(archived))


def display_name(run_dir) -> str:
    """meta.json's name, else the config's name, else the run id."""
    run_dir = Path(run_dir)
    name = read_meta(run_dir).get("name")
    if name:
        return name
    try:
        cfg = json.loads((run_dir / CONFIG_FILE).read_text()).get("config", {})
        return cfg.get("name") or run_dir.name
    except (OSError, json.JSONDecodeError, AttributeError):
        return run_dir.name


def _check_inside_runs(run_dir: Path, workspace) -> Path:
    root = runs_root(workspace if workspace is not None else run_dir.parent.parent).resolve()
    resolved = run_dir.resolve()
    if resolved.parent != root or run_dir.is_symlink():
        raise WorkbenchError(f"refusing to delete {run_dir}: it is not a run folder directly inside {root}")
    if not (resolved / CONFIG_FILE).exists():
        raise WorkbenchError(f"refusing to delete {run_dir}: it holds no {CONFIG_FILE}, so it is not a run")
    return resolved


def delete_run(run_dir, workspace=None, *, trash: bool = True) -> Path | None:
    """Delete a run: moved to ``<workspace>/trash/<run-id>-<time>`` (returned), or removed for good
    with ``trash=False`` (None returned). ``workspace`` defaults to the run's grandparent. Refused
    (RunLockedError naming the holder) while a live process holds the run's writer lock, and
    (WorkbenchError) for any path that is not a run folder directly inside ``<workspace>/runs``.
    A queued entry of the run is dropped from the workspace's queue."""
    run_dir = Path(run_dir)
    resolved = _check_inside_runs(run_dir, workspace)
    holder = lock_holder(resolved)
    if holder is not None:
        raise RunLockedError(f"run {resolved.name} cannot be deleted: it is in use by {holder.describe()}", holder)
    lock = RunLock(resolved, "sslwb delete").acquire()  # no trainer may start while it moves
    try:
        target = None
        if trash:
            folder = resolved.parent.parent / TRASH_DIR
            folder.mkdir(exist_ok=True)
            target = folder / f"{resolved.name}-{time.strftime('%Y%m%d-%H%M%S')}"
            n = 1
            while target.exists():
                n += 1
                target = folder / f"{resolved.name}-{time.strftime('%Y%m%d-%H%M%S')}-{n}"
            os.replace(resolved, target)
            (target / "writer.lock").unlink(missing_ok=True)
        else:
            shutil.rmtree(resolved)
    finally:
        lock.release()
    from .run_queue import RunQueue
    RunQueue(resolved.parent.parent).remove(resolved, missing_ok=True)
    return target


def config_diff(run_dirs, differing_only: bool = False) -> tuple[list[str], list[dict]]:
    """(fields, rows): the fields of :func:`backend.report.config_diff` (method, backbone, data,
    then every field that differs; only differing ones with ``differing_only``) and, per run in
    order, {field: value}. ConfigError when a run's config.json is unreadable."""
    from .report import config_diff as diff_fields, flatten
    from .runs import read_run_config

    configs = [read_run_config(d).to_dict() for d in run_dirs]
    flat = [flatten(c) for c in configs]
    fields = diff_fields(configs)
    if differing_only:
        fields = [f for f in fields if len({json.dumps(x.get(f), sort_keys=True) for x in flat}) > 1]
    return fields, [{f: x.get(f) for f in fields} for x in flat]
