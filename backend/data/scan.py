"""Scan an image folder without decoding it: its layout, classes and unreadable files.

``scan_folder(source)`` lists the images the trainer would use (same layouts and the same folder
checks as ``imagefolder.plan``), then checks every file cheaply: empty, not an image, a possible
decompression bomb (from the header's size), and truncated (a JPEG without its end marker or a
PNG without its IEND chunk is decoded to confirm). Verdicts are cached on disk keyed on
(relative path, size, mtime), so scanning an unchanged folder again only lists and stats it.

No Qt: progress goes to ``on_progress(fraction, text)`` (fraction < 0 while the total is unknown)
and ``cancelled()`` is polled between chunks; a cancelled scan raises :class:`backend.errors.Cancelled`
after saving the verdicts it already has, so the next scan resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

from PIL import Image

from ..errors import Cancelled
from . import cache
from .folder_tree import check_root, read_subdirs, scan_tree, tree_problems
from .imagefolder import error_reason
from .registry import parse_source

SCAN_FORMAT = 1
CHUNK = 512            # files between two progress reports / cancel checks
TAIL_BYTES = 4096      # how far from the end a JPEG's end-of-image marker is looked for
_MAX_NAMED = 3


@dataclass
class ScanReport:
    """What a scan found. ``bad`` lists (path relative to the root, reason) for every bad file."""

    root: Path
    layout: str                                   # 'train/test', 'class folders' or 'flat'
    classes: dict = field(default_factory=dict)   # class name -> image files (all splits)
    images: int = 0                               # files with an image extension
    bad: list = field(default_factory=list)
    cached: int = 0                               # verdicts reused from the scan cache
    seconds: float = 0.0

    @property
    def good(self) -> int:
        """Images that passed the checks."""
        return self.images - len(self.bad)

    def summary(self) -> str:
        """One line for people: counts, classes and the first few bad files with their reasons."""
        classes = f" in {len(self.classes)} classes" if self.classes else " (unlabelled)"
        text = f"{self.good:,} usable images{classes}, {self.layout} layout"
        if self.bad:
            named = ", ".join(f"{rel} ({why})" for rel, why in self.bad[:_MAX_NAMED])
            more = f" and {len(self.bad) - _MAX_NAMED:,} more" if len(self.bad) > _MAX_NAMED else ""
            text += f"; {len(self.bad):,} unreadable file(s) will be skipped: {named}{more}"
        return text


def scan_folder(source: str, *, cache_dir: str | None = None, on_progress=None,
                cancelled=None) -> ScanReport:
    """Scan ``source`` ('imagefolder:<path>' or a plain path). Raises DataError for folder problems
    (missing, unreadable, empty, empty class folders, symlink loops) and :class:`backend.errors.Cancelled`."""
    start = time.perf_counter()
    report_progress = on_progress or (lambda _f, _t: None)
    is_cancelled = cancelled or (lambda: False)
    arg = source
    if str(source).lower().startswith("imagefolder:"):
        _, arg = parse_source(source)
    root = check_root(str(arg))
    report_progress(-1.0, f"listing {root}…")
    layout, records, classes = _list_images(root)
    store = _ScanCache(cache.cache_root(SimpleNamespace(cache_dir=cache_dir or "")), root)
    verdicts, todo, reused = {}, [], 0
    for i, (rel, entry) in enumerate(records):
        if i % CHUNK == 0:
            _check_cancel(is_cancelled, store, verdicts)
            report_progress(-1.0, f"listing {root}: {i:,} of {len(records):,} files")
        try:
            st = entry.stat()
        except OSError as exc:
            verdicts[rel] = (0, 0, error_reason(exc, entry.path))
            continue
        known = store.lookup(rel, st.st_size, st.st_mtime_ns)
        if known is None:
            todo.append((rel, st.st_size, st.st_mtime_ns))
        else:
            verdicts[rel] = (st.st_size, st.st_mtime_ns, known)
            reused += 1
    for i, (rel, size, mtime) in enumerate(todo):
        if i % CHUNK == 0:
            _check_cancel(is_cancelled, store, verdicts)
            report_progress(i / len(todo), f"checking {i:,} of {len(todo):,} new or changed files")
        verdicts[rel] = (size, mtime, check_file(f"{root}/{rel}", size))
    if todo or len(verdicts) != len(store.files):   # new, changed or deleted files
        store.save(verdicts)
    report_progress(1.0, "done")
    bad = [(rel, verdicts[rel][2]) for rel, _ in records if verdicts[rel][2]]
    return ScanReport(root=root, layout=layout, classes=classes, images=len(records), bad=bad,
                      cached=reused, seconds=time.perf_counter() - start)


def _check_cancel(is_cancelled, store: "_ScanCache", verdicts: dict) -> None:
    if is_cancelled():
        store.save(verdicts, merge=True)   # keep the work done: the next scan resumes from here
        raise Cancelled()


def _list_images(root: Path) -> tuple[str, list, dict]:
    """(layout, [(relative path, DirEntry)] sorted by path, images per class) with the trainer's
    folder checks."""
    subdirs = read_subdirs(root)
    test_dir = subdirs.get("test") or subdirs.get("val")
    if "train" in subdirs and test_dir:
        layout, folders = "train/test", [root / subdirs["train"], root / test_dir]
    else:
        folders = [root / subdirs["train"] if list(subdirs) == ["train"] else root]
        layout = ""
    records, classes = [], {}
    for folder in folders:
        tree = scan_tree(folder, root)
        tree_problems(tree, root)
        if tree.classes:
            for name, files in tree.classes.items():
                classes[name] = classes.get(name, 0) + len(files)
                records.extend(files)
        else:
            records.extend(tree.loose)
    layout = layout or ("class folders" if classes else "flat")
    records.sort(key=lambda record: record[0])
    return layout, records, classes


def check_file(path, size: int | None = None) -> str:
    """'' when ``path`` looks like a usable image, else the reason it would be skipped. Reads the
    header and the last bytes; decodes only a JPEG/PNG whose end marker is missing."""
    try:
        if (os.path.getsize(path) if size is None else size) == 0:
            return "empty file (0 bytes)"
        with Image.open(path) as im:
            w, h = im.size
            limit = Image.MAX_IMAGE_PIXELS
            if limit and w * h > limit:
                raise Image.DecompressionBombError(f"{w}x{h} pixels is above the limit of {limit}")
            if not _has_end_marker(path, im.format):
                im.draft("RGB", (64, 64))       # a cheap, reduced decode is enough to confirm
                im.load()
    except Exception as exc:  # noqa: BLE001 - any failure is this file's reason
        return error_reason(exc, path)
    return ""


def _has_end_marker(path, fmt: str | None) -> bool:
    """Whether a JPEG ends with its EOI marker / a PNG with its IEND chunk (other formats: True)."""
    if fmt not in ("JPEG", "PNG"):
        return True
    with open(path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        n = fh.tell()
        fh.seek(max(0, n - TAIL_BYTES))
        tail = fh.read()
    return (b"\xff\xd9" in tail) if fmt == "JPEG" else tail.endswith(b"IEND\xaeB`\x82")


class _ScanCache:
    """Per-folder verdicts {relative path: [size, mtime_ns, reason]} in ``<cache>/scans/``, written
    atomically (temp file + ``os.replace``); an unreadable or foreign file counts as empty."""

    def __init__(self, cache_root: Path, root: Path):
        digest = hashlib.sha256(str(root).encode()).hexdigest()[:24]
        self.path = Path(cache_root) / "scans" / f"{digest}.json"
        self.root = str(root)
        self.files = self._read()

    def _read(self) -> dict:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict) or data.get("format") != SCAN_FORMAT or data.get("root") != self.root:
            return {}
        files = data.get("files")
        return files if isinstance(files, dict) else {}

    def lookup(self, rel: str, size: int, mtime_ns: int) -> str | None:
        """The cached reason ('' = fine) when size and mtime still match, else None."""
        entry = self.files.get(rel)
        if isinstance(entry, list) and len(entry) == 3 and entry[0] == size and entry[1] == mtime_ns:
            return entry[2]
        return None

    def save(self, verdicts: dict, merge: bool = False) -> None:
        """Store ``verdicts`` (plus, with ``merge``, the older ones not re-checked yet); a cache
        that cannot be written only costs time on the next scan."""
        files = dict(self.files) if merge else {}
        files.update({rel: list(v) for rel, v in verdicts.items()})
        payload = {"format": SCAN_FORMAT, "root": self.root, "files": files}
        tmp = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(payload, separators=(",", ":")), encoding="utf-8")
            os.replace(tmp, self.path)
        except OSError:
            tmp.unlink(missing_ok=True)
            return
        self.files = files
