"""The method catalogue: every method's ``MethodSpec``, read without importing torch.

Each method module declares ``SPEC = MethodSpec(...)`` using only the names of
``backend.methods.spec``. ``method_specs()`` parses every module of this package with ``ast`` and
evaluates just that expression against the spec module's namespace, so config validation, CLI
help and the GUI learn every method and its hyperparameters while the modules themselves (and
torch) stay unimported. Specs registered in-process (``add_spec``, e.g. by a test) join them.
"""

from __future__ import annotations

import ast
import threading
from pathlib import Path

from . import spec as spec_module
from .spec import MethodSpec

PACKAGE_DIR = Path(__file__).resolve().parent
SHARED_MODULES = frozenset({"__init__", "spec", "catalog", "base", "components"})
SAFE_BUILTINS = {"dict": dict, "tuple": tuple}

_lock = threading.Lock()
_read: dict | None = None          # name -> MethodSpec read from the package's modules
_modules: dict = {}                # name -> module that declares it
_added: dict = {}                  # name -> MethodSpec registered in-process


def method_module_names() -> list[str]:
    """Modules of this package that may declare methods (not the shared machinery, not _private)."""
    return sorted(p.stem for p in PACKAGE_DIR.glob("*.py")
                  if p.stem not in SHARED_MODULES and not p.stem.startswith("_"))


def read_spec(path) -> MethodSpec | None:
    """The ``SPEC`` a module's source declares (None when it declares none), without importing it."""
    path = Path(path)
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    expr = None
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "SPEC" for t in node.targets):
            expr = node.value
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.target.id == "SPEC":
            expr = node.value
    if expr is None:
        return None
    namespace = {k: v for k, v in vars(spec_module).items() if not k.startswith("_")}
    namespace["__builtins__"] = SAFE_BUILTINS
    try:
        value = eval(compile(ast.Expression(expr), str(path), "eval"), namespace)  # noqa: S307
    except Exception as exc:  # noqa: BLE001 - reported with the module's name
        raise ValueError(f"{path.name}: SPEC must be built from backend.methods.spec's names only "
                         f"({type(exc).__name__}: {exc})") from exc
    if not isinstance(value, MethodSpec):
        raise ValueError(f"{path.name}: SPEC must be a MethodSpec, got {type(value).__name__}")
    return value


def _read_package() -> dict:
    global _read
    with _lock:
        if _read is None:
            found, modules = {}, {}
            for module in method_module_names():
                spec = read_spec(PACKAGE_DIR / f"{module}.py")
                if spec is None:
                    continue
                if spec.name in found:
                    raise ValueError(f"method {spec.name!r} is declared by both {modules[spec.name]}.py "
                                     f"and {module}.py")
                found[spec.name], modules[spec.name] = spec, module
            _modules.update(modules)
            _read = found
        return _read


def method_specs() -> dict[str, MethodSpec]:
    """Name -> MethodSpec of every method (the package's modules and in-process ones), by name."""
    specs = {**_read_package(), **_added}
    return dict(sorted(specs.items()))


def method_spec(name: str) -> MethodSpec | None:
    """The spec of method ``name`` (None when no method has that name)."""
    return _added.get(name) or _read_package().get(name)


def method_names() -> list[str]:
    """Every method name, sorted."""
    return list(method_specs())


def module_of(name: str) -> str | None:
    """The module of this package that declares method ``name`` (None for in-process ones)."""
    _read_package()
    return _modules.get(name)


def add_spec(spec: MethodSpec) -> MethodSpec:
    """Register a spec in-process (a method defined outside this package, e.g. in a test)."""
    known = method_spec(spec.name)
    if known is not None and known != spec:
        raise ValueError(f"a different method named {spec.name!r} is already registered")
    if spec.name not in _read_package():
        _added[spec.name] = spec
    return spec


def remove_spec(name: str) -> None:
    """Forget an in-process spec (the package's own specs stay)."""
    _added.pop(name, None)


def field_owners() -> dict[str, list[str]]:
    """Hyperparameter name -> the methods that declare it."""
    owners: dict[str, list[str]] = {}
    for name, spec in method_specs().items():
        for key in spec.params:
            owners.setdefault(key, []).append(name)
    return owners
