"""Registry of self-supervised methods: name -> Method subclass (also fills the GUI's picker).

Every module in this package that defines a method registers it with ``@register``; the modules
are imported here once, so adding a method means adding one file."""

import importlib
import pkgutil

METHODS: dict = {}

_SHARED_MODULES = {"base", "components"}


def register(cls):
    """Class decorator: add a Method subclass to METHODS under ``cls.name``."""
    METHODS[cls.name] = cls
    return cls


def _discover() -> None:
    for info in pkgutil.iter_modules(__path__):
        if info.name not in _SHARED_MODULES and not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")


_discover()
