"""``data.classes_file``: train on a named subset of an image folder's class folders.

The file lists one class folder name a line (blank lines and ``#`` comments ignored), e.g.
``resources/imagenet100_classes.txt`` (ImageNet-100, the 100 WordNet ids of CMC). Only those
class folders are scanned and used, in both splits; class indices follow the sorted names, as for
any image folder. A relative name is looked up in the current folder, then in the project's
``resources/`` folder, so presets can say ``classes_file = "imagenet100_classes.txt"``.
Problems (missing file, duplicates, no names, classes absent from the folder) are DataErrors
naming the file and the fix. Standard library only.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import DataError

RESOURCES = Path(__file__).resolve().parents[2] / "resources"
_NAMED = 5


def resolve_classes_file(text: str) -> Path:
    """The file ``data.classes_file`` names (as given, else under resources/); DataError if none."""
    given = Path(str(text)).expanduser()
    for cand in ([given] if given.is_absolute() else [given, RESOURCES / given]):
        if cand.is_file():
            return cand.resolve()
    where = "" if given.is_absolute() else f" (nor {RESOURCES / given})"
    raise DataError(f"data.classes_file {text!r} does not exist{where}; give the path of a text file "
                    f"with one class folder name a line, or '' to use every class")


def read_classes_file(text: str) -> list[str]:
    """The class names of ``data.classes_file`` in file order (DataError when unusable)."""
    path = resolve_classes_file(text)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read data.classes_file {path}: {exc}") from None
    names = [line.split("#", 1)[0].strip() for line in lines]
    names = [n for n in names if n]
    if not names:
        raise DataError(f"data.classes_file {path} lists no class names (one folder name a line)")
    seen, dups = set(), []
    for n in names:
        if n in seen:
            dups.append(n)
        seen.add(n)
    if dups:
        raise DataError(f"data.classes_file {path} lists {', '.join(sorted(set(dups))[:_NAMED])} more than "
                        f"once; each class must appear once")
    return names


def check_present(wanted: list[str], found, root, classes_file: str) -> None:
    """DataError when some ``wanted`` classes are not class folders (with images) of ``root``."""
    found = set(found)
    missing = [n for n in wanted if n not in found]
    if missing:
        more = f" and {len(missing) - _NAMED} more" if len(missing) > _NAMED else ""
        raise DataError(f"image folder {root} lacks {len(missing)} of the {len(wanted)} classes of "
                        f"data.classes_file {classes_file}: {', '.join(missing[:_NAMED])}{more}; point "
                        f"data.source at the full data set (e.g. the ImageNet train/ and val/ folders) or "
                        f"edit the list")
