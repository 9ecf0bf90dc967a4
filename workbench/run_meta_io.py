"""A run's user metadata in ``<run dir>/meta.json``: notes, tags, display name and the archived
flag (the format agreed with ``backend/run_meta.py``; this small reader/writer is what the GUI
uses until that module is merged, and can then delegate to it). Writes are atomic."""

from __future__ import annotations

import json
import os
from pathlib import Path

META_FILE = "meta.json"
DEFAULTS = {"notes": "", "tags": [], "display_name": "", "archived": False}


def parse_tags(text: str) -> list[str]:
    """'a, b  c,a' -> ['a', 'b c'] style: comma-separated, trimmed, empty and repeated ones dropped."""
    out = []
    for tag in (t.strip() for t in str(text).split(",")):
        if tag and tag not in out:
            out.append(tag)
    return out


def read_meta(run_dir) -> dict:
    """The run's metadata with defaults for what is missing (an unreadable file reads as defaults;
    keys this GUI does not know are kept)."""
    path = Path(run_dir) / META_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        data = {}
    if not isinstance(data, dict):
        data = {}
    meta = {**DEFAULTS, **data}
    if not isinstance(meta["tags"], list):
        meta["tags"] = parse_tags(meta["tags"]) if isinstance(meta["tags"], str) else []
    return meta


def write_meta(run_dir, **changes) -> dict:
    """Merge ``changes`` (notes, tags, display_name, archived) into meta.json atomically; returns
    the new metadata. ValueError for an unknown key or a value of the wrong type."""
    for key, value in changes.items():
        if key not in DEFAULTS:
            raise ValueError(f"unknown run metadata field {key!r} (known: {', '.join(DEFAULTS)})")
        if not isinstance(value, type(DEFAULTS[key])):
            raise ValueError(f"run metadata {key!r} must be {type(DEFAULTS[key]).__name__}, "
                             f"got {type(value).__name__}")
    run_dir = Path(run_dir)
    meta = {**read_meta(run_dir), **changes}
    path = run_dir / META_FILE
    tmp = path.with_name(f".{META_FILE}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return meta


def read_metas(run_dirs) -> dict[str, dict]:
    """{str(run_dir): metadata} of several runs (for the runs table)."""
    return {str(d): read_meta(d) for d in run_dirs}
