"""Registry of methods: the torch-free catalogue of their specs and, on demand, their classes.

``catalog.method_specs()`` lists every method's ``MethodSpec`` without importing torch (config
validation and the GUI use it). ``METHODS`` (name -> Method subclass) is built on first access by
importing every method module, each of which decorates its class with ``@register(SPEC)``.
Adding a method means adding one module that holds ``SPEC = MethodSpec(...)`` and its class.
"""

from __future__ import annotations

import importlib

from ._preview import has_preview_inputs, preview_inputs
from .catalog import add_spec, method_module_names, method_spec, method_specs, remove_spec
from .spec import FAMILIES, MethodSpec

__all__ = ["FAMILIES", "METHODS", "MethodSpec", "has_preview_inputs", "load_methods", "method_spec", "method_specs",
           "preview_inputs", "register", "unregister"]

_classes: dict = {}
_imported = False


def _attach(cls, spec: MethodSpec):
    add_spec(spec)
    cls.spec = spec
    cls.name, cls.label = spec.name, spec.label
    cls.families, cls.uses_labels = tuple(spec.backbones), spec.uses_labels
    _classes[spec.name] = cls
    return cls


def register(target):
    """``@register(SPEC)``: class decorator adding a Method subclass to METHODS under its spec's
    name (the class takes name, label, backbone families and uses_labels from the spec). A spec
    not in the catalogue yet (a method defined outside this package) is added to it. The bare
    ``@register`` of older modules works when the catalogue has a spec named ``cls.name``."""
    if isinstance(target, MethodSpec):
        return lambda cls: _attach(cls, target)
    if isinstance(target, type):
        spec = method_spec(getattr(target, "name", ""))
        if spec is None:
            raise TypeError(f"method class {target.__qualname__} ({target.__module__}) has no spec: declare "
                            f"SPEC = MethodSpec(name=..., ...) in its module and decorate it with @register(SPEC)")
        return _attach(target, spec)
    raise TypeError(f"register takes a MethodSpec (@register(SPEC)), got {target!r}")


def unregister(name: str) -> None:
    """Remove a method registered in-process (its class and its spec)."""
    _classes.pop(name, None)
    remove_spec(name)


def load_methods() -> dict:
    """Name -> Method subclass of every method (imports the method modules, and torch, once)."""
    global _imported
    if not _imported:
        for module in method_module_names():
            importlib.import_module(f"{__name__}.{module}")
        _imported = True
    return _classes


def __getattr__(name: str):
    if name == "METHODS":
        return load_methods()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
