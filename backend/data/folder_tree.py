"""Finding the images of an image folder: class subfolders and loose files, symlink loops, and
the folder problems refused with a DataError naming the path and the fix (missing, not a folder,
unreadable, no images, class folders without images). Listing only: no file is opened here.
``imagefolder.plan`` and the GUI's folder scan (``scan.py``) both build on it."""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DataError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff"})
_EXTS = "jpg, jpeg, png, bmp, webp, gif, tif, tiff"

@dataclass
class FolderTree:
    """Image files under one folder: per class (subfolder) and loose (directly inside)."""

    root: Path
    classes: dict = field(default_factory=dict)   # class name -> [(relpath, DirEntry)]
    loose: list = field(default_factory=list)     # [(relpath, DirEntry)]
    empty_classes: list = field(default_factory=list)  # subfolders holding no image
    loops: list = field(default_factory=list)          # symlinks that loop (relative paths)
    unreadable: list = field(default_factory=list)     # (folder, reason) that could not be listed

    @property
    def empty(self) -> bool:
        return not self.classes and not self.loose


def _is_image_name(name: str) -> bool:
    dot = name.rfind(".")
    return dot > 0 and name[dot:].lower() in IMAGE_EXTENSIONS


def _file_record(entry: os.DirEntry, rel: str):
    """(relative path, DirEntry): the stat is taken later, only for the files a split uses."""
    return rel, entry


def _walk_images(folder: str, rel_prefix: str, *, any_only: bool = False,
                 unreadable: list | None = None) -> list:
    """Every image below ``folder`` (recursive, symlinked subfolders not followed), sorted.

    With ``any_only``, stop at the first image and skip the stat (to learn whether a class exists).
    Folders that cannot be listed are skipped and appended to ``unreadable`` as (path, reason)."""
    found, stack = [], [(folder, rel_prefix)]
    while stack:
        path, rel = stack.pop()
        try:
            with os.scandir(path) as it:
                entries = list(it)
        except OSError as exc:
            if unreadable is not None:
                unreadable.append((path, exc.strerror or str(exc)))
            continue
        for e in entries:
            if e.name.startswith("."):
                continue
            if e.is_dir(follow_symlinks=False):
                stack.append((e.path, f"{rel}/{e.name}"))
            elif _is_image_name(e.name) and e.is_file():
                if any_only:
                    return [(f"{rel}/{e.name}", None)]
                found.append(_file_record(e, f"{rel}/{e.name}"))
    found.sort(key=lambda record: record[0])
    return found


def scan_tree(folder: Path, rel_to: Path, *, classes_only: bool = False, only=None) -> FolderTree:
    """Scan one split folder; paths are recorded relative to ``rel_to`` (the source root).

    ``classes_only``: just find which class folders hold images (no file lists, no stats).
    ``only``: a set of class folder names; other subfolders and loose files are not looked at."""
    tree = FolderTree(folder)
    prefix = os.path.relpath(folder, rel_to).replace(os.sep, "/")
    prefix = "" if prefix == "." else prefix + "/"
    try:
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError as exc:
        raise DataError(f"cannot read image folder {folder}: {exc.strerror or exc}; give your user read "
                        f"access (chmod -R u+rX '{folder}') or copy the images to a folder you own") from None
    for e in entries:
        if e.name.startswith("."):
            continue
        if only is not None and e.name not in only:
            continue
        if e.is_symlink() and _link_loops(e.path, folder):
            tree.loops.append(prefix + e.name)
        elif e.is_dir():
            files = _walk_images(e.path, prefix + e.name, any_only=classes_only,
                                 unreadable=tree.unreadable)
            if files:
                tree.classes[e.name] = files
            else:
                tree.empty_classes.append(e.name)
        elif _is_image_name(e.name) and e.is_file():
            tree.loose.append(_file_record(e, prefix + e.name))
    return tree


def _link_loops(path: str, folder: Path) -> bool:
    """Whether the symlink ``path`` (inside ``folder``) loops: it cannot be resolved because it
    points to itself, or it points back to ``folder`` or one of its ancestors."""
    try:
        target = Path(path).resolve(strict=True)
    except RuntimeError:             # Python < 3.13: 'Symlink loop from ...'
        return True
    except OSError as exc:
        return exc.errno == errno.ELOOP
    here = Path(folder).resolve()
    return target == here or target in here.parents


def tree_problems(tree: FolderTree, root: Path) -> None:
    """Raise DataError (path and likely fix) for loops, unreadable or empty class folders."""
    if tree.loops:
        links = ", ".join(str(root / rel) for rel in tree.loops[:3])
        raise DataError(f"symlink loop in image folder {root}: {links} points back to itself or to a "
                        f"parent folder; remove the link or replace it with the real folder")
    if tree.unreadable:
        path, why = tree.unreadable[0]
        more = f" (and {len(tree.unreadable) - 1} more)" if len(tree.unreadable) > 1 else ""
        raise DataError(f"cannot read folder {path}{more}: {why}; give your user read access "
                        f"(chmod -R u+rX '{root}') or copy the images to a folder you own")
    if tree.empty:
        where = (f"its class folders ({', '.join(tree.empty_classes[:5])}) are empty"
                 if tree.empty_classes else "it holds no image files")
        raise DataError(f"image folder {tree.root} contains no images ({_EXTS}): {where}; put the "
                        f"images in one sub-folder per class (e.g. {tree.root / 'cats' / '001.jpg'}) "
                        f"or directly in the folder")
    if tree.empty_classes and tree.classes:
        names = ", ".join(tree.empty_classes[:5]) + (" ..." if len(tree.empty_classes) > 5 else "")
        raise DataError(f"image folder {tree.root} has {len(tree.empty_classes)} class folder(s) without "
                        f"images ({_EXTS}): {names}; add images to them or remove them (an empty "
                        f"folder would be a class with no examples)")


def list_subdirs(root: Path) -> dict:
    """Lower-cased name -> real name of the visible subfolders of ``root``."""
    with os.scandir(root) as it:
        return {e.name.lower(): e.name for e in it if not e.name.startswith(".") and e.is_dir()}


def check_root(arg: str) -> Path:
    """The image folder as an absolute path; DataError (with the fix) when it cannot be one."""
    given = Path(arg).expanduser()
    where = f"(data.source = 'imagefolder:{arg}')"
    loop = DataError(f"image folder {given.absolute()} is a symlink loop (a link that leads back to "
                     f"itself) {where}; point data.source at the real folder")
    try:
        root = given.resolve(strict=True)
    except RuntimeError:                                 # Python < 3.13 reports loops this way
        raise loop from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise loop from None
        if isinstance(exc, PermissionError):
            raise DataError(f"cannot reach image folder {given.absolute()}: permission denied {where}; "
                            f"give your user access to it and its parent folders") from None
        broken = " (a symlink whose target is missing)" if given.is_symlink() else ""
        raise DataError(f"image folder {given.absolute()} does not exist{broken} {where}; check the "
                        f"path, or pick the folder with Browse") from None
    if not root.is_dir():
        raise DataError(f"{root} is not a folder {where}; choose the folder that holds the images, "
                        f"not a file") from None
    return root


def read_subdirs(root: Path) -> dict:
    """``list_subdirs`` with a DataError (and the fix) when the folder cannot be listed."""
    try:
        return list_subdirs(root)
    except OSError as exc:
        raise DataError(f"cannot read image folder {root}: {exc.strerror or exc}; give your user read "
                        f"access (chmod -R u+rX '{root}') or copy the images to a folder you own") from None
