"""A run's user metadata for the GUI: notes, tags, display name and the archived flag, read and
written through ``backend.run_meta`` (``<run dir>/meta.json``, atomic writes). The GUI calls the
display name ``display_name``; the file stores it as ``name``."""

from __future__ import annotations

from backend import run_meta

DEFAULTS = {"notes": "", "tags": [], "display_name": "", "archived": False}


def parse_tags(text: str) -> list[str]:
    """'a, b  c,a' -> ['a', 'b  c']: comma-separated, trimmed, empty and repeated ones dropped."""
    out = []
    for tag in (t.strip() for t in str(text).split(",")):
        if tag and tag not in out:
            out.append(tag)
    return out


def read_meta(run_dir) -> dict:
    """The run's metadata with defaults for what is missing (keys the GUI does not know are kept)."""
    meta = run_meta.read_meta(run_dir)
    meta["display_name"] = meta.pop("name", "") or ""
    if not isinstance(meta.get("tags"), list):
        meta["tags"] = parse_tags(meta["tags"]) if isinstance(meta.get("tags"), str) else []
    return {**DEFAULTS, **meta}


_WRITERS = {"notes": run_meta.set_notes, "tags": run_meta.set_tags,
            "display_name": run_meta.set_display_name, "archived": run_meta.archive_run}


def write_meta(run_dir, **changes) -> dict:
    """Apply ``changes`` (notes, tags, display_name, archived); returns the new metadata.
    ValueError for an unknown key or a value of the wrong type."""
    for key, value in changes.items():
        if key not in DEFAULTS:
            raise ValueError(f"unknown run metadata field {key!r} (known: {', '.join(DEFAULTS)})")
        if not isinstance(value, type(DEFAULTS[key])):
            raise ValueError(f"run metadata {key!r} must be {type(DEFAULTS[key]).__name__}, "
                             f"got {type(value).__name__}")
    for key, value in changes.items():
        _WRITERS[key](run_dir, value)
    return read_meta(run_dir)


def read_metas(run_dirs) -> dict[str, dict]:
    """{str(run_dir): metadata} of several runs (for the runs table)."""
    return {str(d): read_meta(d) for d in run_dirs}
