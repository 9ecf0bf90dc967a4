"""The import contract between the engine (``backend/``) and the GUI (``workbench/``), checked
statically (an AST scan of every ``.py`` file; nothing is imported to check it).

1. ``backend`` is GUI-free: no module under ``backend/`` imports ``workbench``, ``sslwb`` (the
   command above both layers), ``PySide6``,
   ``PySide2``, ``PyQt5``, ``PyQt6``, ``qtpy`` or ``pyqtgraph`` (or any of their submodules) - not
   at top level, not inside a function or method, and not lazily through
   ``importlib.import_module("...")`` or ``__import__("...")`` with a literal name. The trainer,
   the CLI and the tests then run without Qt.

2. What ``workbench`` may take from ``backend`` (how it uses it today: configs, run folders and
   events, errors, devices, data sources and the folder scan, the augmentation preview, the
   method registry, the collapse rule, and the inspection/export/probe/fine-tune tools, all run
   in worker threads):

   - public modules only: no part of the dotted path starts with ``_`` (``backend.__version__``
     from the package itself is fine), and no imported name starts with ``_``;
   - never the training internals: a run is trained by ``python -m backend train`` in a
     QProcess (``workbench/process.py``), never inside the GUI process, so ``workbench`` imports
     none of ``backend.train``, ``backend.cli``, ``backend.__main__``, ``backend.control``,
     ``backend.distributed``, ``backend.faults``, ``backend.optim``, ``backend.losses``,
     ``backend.metrics``, ``backend.progress``, ``backend.models`` or one method's module
     (``backend.methods.<name>``; the ``backend.methods`` registry is fine);
   - the inspection and export packages through their entry points, ``backend.inspect`` and
     ``backend.export``, not their parts (``backend.inspect.common``, ``backend.export.formats``...).

   What cannot be seen statically (``getattr`` with a computed name, a module object's private
   attribute reached at run time) is not checked.
"""

from __future__ import annotations

import ast
import importlib
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# ``sslwb`` is the entry point above both layers: the engine never imports it either.
GUI_TOP_LEVEL = ("workbench", "sslwb", "PySide6", "PySide2", "PyQt5", "PyQt6", "qtpy", "pyqtgraph")
TRAINING_INTERNALS = ("backend.train", "backend.cli", "backend.__main__", "backend.control",
                      "backend.distributed", "backend.faults", "backend.optim", "backend.losses",
                      "backend.metrics", "backend.progress", "backend.models")
ENTRY_POINT_PACKAGES = ("backend.inspect", "backend.export", "backend.methods")


@dataclass(frozen=True)
class Import:
    """One import found in a file: the absolute module, the names taken from it, where, and how."""

    module: str
    names: tuple[str, ...]
    path: Path
    line: int
    how: str  # "import", "from", "import_module", "__import__"

    def where(self) -> str:
        """``path:line`` of the import."""
        return f"{self.path}:{self.line}"


def module_name(path: Path, root: Path) -> tuple[str, bool]:
    """(dotted module name of ``path`` under ``root``, whether it is a package ``__init__``)."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    is_package = parts[-1] == "__init__"
    if is_package:
        parts = parts[:-1]
    return ".".join(parts), is_package


def _resolve(level: int, module: str | None, current: str, is_package: bool) -> str:
    """The absolute module of ``from <dots><module> import ...`` written in ``current``."""
    if level == 0:
        return module or ""
    base = current.split(".") if is_package else current.split(".")[:-1]
    base = base[: len(base) - (level - 1)] if level > 1 else base
    return ".".join([*base, module] if module else base)


def _literal(node: ast.AST) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _is_dynamic_import(func: ast.AST) -> str | None:
    """"import_module" / "__import__" when ``func`` is ``importlib.import_module``,
    ``import_module`` (however imported) or ``__import__``."""
    if isinstance(func, ast.Name) and func.id in ("import_module", "__import__"):
        return func.id
    if isinstance(func, ast.Attribute) and func.attr in ("import_module", "__import__"):
        return func.attr
    return None


def imports_in(path: Path, root: Path) -> list[Import]:
    """Every import in ``path`` (anywhere in the file), with relative imports made absolute."""
    current, is_package = module_name(path, root)
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [Import(alias.name, (), path, node.lineno, "import") for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = _resolve(node.level, node.module, current, is_package)
            found.append(Import(module, tuple(a.name for a in node.names), path, node.lineno, "from"))
        elif isinstance(node, ast.Call) and node.args and (how := _is_dynamic_import(node.func)):
            name = _literal(node.args[0])
            if name is None:
                continue
            if how == "import_module" and name.startswith("."):
                package = _literal(node.args[1]) if len(node.args) > 1 else next(
                    (_literal(k.value) for k in node.keywords if k.arg == "package"), None)
                if package is None:
                    continue
                dots = len(name) - len(name.lstrip("."))
                name = _resolve(dots, name.lstrip(".") or None, package, True)
            found.append(Import(name, (), path, node.lineno, how))
    return sorted(found, key=lambda i: i.line)


def python_files(folder: Path) -> list[Path]:
    """Every ``.py`` file under ``folder`` (caches skipped)."""
    return sorted(p for p in folder.rglob("*.py") if "__pycache__" not in p.parts)


def _under(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def backend_violations(root: Path) -> list[str]:
    """Rule 1: every GUI import under ``root/backend``, as ``path:line: how module``."""
    problems = []
    for path in python_files(root / "backend"):
        for imp in imports_in(path, root):
            targets = [imp.module] + [f"{imp.module}.{n}" if imp.module else n for n in imp.names]
            hit = next((t for t in targets if any(_under(t, top) for top in GUI_TOP_LEVEL)), None)
            if hit is not None:
                problems.append(f"{imp.where()}: backend must not import {hit} ({imp.how})")
    return problems


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _is_module(dotted: str, backend_root: Path) -> bool:
    """Whether ``dotted`` names a module or package in the tree under ``backend_root``."""
    path = backend_root.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def workbench_violations(root: Path, backend_root: Path = ROOT) -> list[str]:
    """Rule 2: every import under ``root/workbench`` that takes from ``backend`` (as found under
    ``backend_root``) more than it may, as ``path:line: why``."""
    problems = []
    for path in python_files(root / "workbench"):
        for imp in imports_in(path, root):
            if not _under(imp.module, "backend"):
                continue
            private = [n for n in imp.names if _private(n)] + [p for p in imp.module.split(".") if _private(p)]
            if private:
                problems.append(f"{imp.where()}: workbench must not use backend's private {', '.join(private)}")
            # ``from backend.x import y`` imports the module backend.x.y when there is one
            modules = [imp.module] + [f"{imp.module}.{n}" for n in imp.names
                                      if _is_module(f"{imp.module}.{n}", backend_root)]
            internal = [m for m in modules if any(_under(m, t) for t in TRAINING_INTERNALS)]
            parts = [m for m in modules if any(m.startswith(pkg + ".") for pkg in ENTRY_POINT_PACKAGES)]
            if internal:
                problems.append(f"{imp.where()}: workbench must not import {internal[0]}: training internals "
                                f"run in the trainer process")
            elif parts:
                package = next(pkg for pkg in ENTRY_POINT_PACKAGES if parts[0].startswith(pkg + "."))
                problems.append(f"{imp.where()}: workbench must not import {parts[0]}: use {package}")
    return problems


# ---- the contract holds for this checkout -----------------------------------------------------
def test_backend_never_imports_the_gui():
    assert backend_violations(ROOT) == []


def test_workbench_takes_only_public_non_training_parts_of_backend():
    assert workbench_violations(ROOT) == []


def test_the_scan_sees_the_real_tree():
    """Guards against a checker that passes because it read nothing."""
    backend_files = python_files(ROOT / "backend")
    assert len(backend_files) > 30 and ROOT / "backend" / "inspect" / "__init__.py" in backend_files
    uses = [i.module for p in python_files(ROOT / "workbench") for i in imports_in(p, ROOT)]
    assert "backend.inspect" in uses and "backend.export" in uses and "PySide6.QtCore" in uses


def test_backend_inspect_does_not_shadow_the_stdlib_inspect_module():
    import backend.inspect

    stdlib_inspect = importlib.import_module("inspect")
    assert Path(backend.inspect.__file__) == ROOT / "backend" / "inspect" / "__init__.py"
    assert Path(stdlib_inspect.__file__).parent == Path(importlib.import_module("os").__file__).parent
    assert callable(stdlib_inspect.signature)
    assert str(ROOT / "backend") not in [str(Path(p).resolve()) for p in sys.path if p]


# ---- the checker catches what it should ---------------------------------------------------------
FORBIDDEN_BACKEND = {
    "top.py": ("import os\nimport PySide6\n", 2, "PySide6"),
    "from_workbench.py": ("from workbench import settings\n", 1, "workbench"),
    "lazy.py": ("def draw():\n    import pyqtgraph as pg\n    return pg\n", 2, "pyqtgraph"),
    "dynamic.py": ("import importlib\n\n\ndef gui():\n    return importlib.import_module(\"pyqtgraph\")\n", 5,
                   "pyqtgraph"),
    "dunder.py": ("def qt():\n    return __import__(\"PyQt5.QtCore\")\n", 2, "PyQt5.QtCore"),
    "qtpy_from.py": ("class A:\n    def m(self):\n        from qtpy.QtCore import QTimer\n", 3, "qtpy.QtCore"),
    "relative_up.py": ("from .. import workbench\n", 1, "workbench"),
}


def _fake_tree(tmp_path: Path, package: str, files: dict[str, str]) -> Path:
    (tmp_path / package).mkdir()
    (tmp_path / package / "__init__.py").write_text("")
    for name, text in files.items():
        (tmp_path / package / name).write_text(text)
    return tmp_path


@pytest.mark.parametrize("name", sorted(FORBIDDEN_BACKEND))
def test_checker_reports_each_forbidden_backend_import_with_file_and_line(tmp_path, name):
    text, line, module = FORBIDDEN_BACKEND[name]
    root = _fake_tree(tmp_path, "backend", {name: text, "fine.py": "import inspect\nfrom .fine import x\n"})
    problems = backend_violations(root)
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"{root / 'backend' / name}:{line}: ") and module in problems[0], problems


def test_checker_passes_a_clean_backend(tmp_path):
    root = _fake_tree(tmp_path, "backend", {
        "a.py": "import importlib\nimport torch\nfrom .b import c\n\n\ndef f(name):\n"
                "    return importlib.import_module(name), importlib.import_module('json')\n"})
    assert backend_violations(root) == []


FORBIDDEN_WORKBENCH = {
    "trains.py": ("from backend.train import train\n", 1, "backend.train"),
    "lazy_cli.py": ("def go():\n    from backend import cli\n", 2, "backend.cli"),
    "private_name.py": ("from backend.runs import _atomic_write\n", 1, "_atomic_write"),
    "private_module.py": ("import backend.data._impl\n", 1, "_impl"),
    "inside.py": ("from backend.inspect.common import restored\n", 1, "backend.inspect.common"),
    "method.py": ("import importlib\nm = importlib.import_module('backend.methods.simclr')\n", 2,
                  "backend.methods.simclr"),
}


@pytest.mark.parametrize("name", sorted(FORBIDDEN_WORKBENCH))
def test_checker_reports_each_forbidden_workbench_import_with_file_and_line(tmp_path, name):
    text, line, needle = FORBIDDEN_WORKBENCH[name]
    root = _fake_tree(tmp_path, "workbench", {name: text})
    problems = workbench_violations(root)
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"{root / 'workbench' / name}:{line}: ") and needle in problems[0], problems


def test_checker_allows_what_workbench_uses_today(tmp_path):
    root = _fake_tree(tmp_path, "workbench", {"ok.py": (
        "from backend import __version__\nfrom backend.inspect import compute_embeddings\n"
        "from backend.export import load_encoder\nfrom backend.methods import METHODS\n"
        "from backend.data.scan import scan_folder\nfrom . import settings\nimport PySide6.QtCore\n")})
    assert workbench_violations(root) == []
