"""Registry of self-supervised methods: name -> Method subclass (also fills the GUI's picker)."""

METHODS: dict = {}


def register(cls):
    """Class decorator: add a Method subclass to METHODS under ``cls.name``."""
    METHODS[cls.name] = cls
    return cls

# Importing the method modules fills METHODS (each class registers itself).
from . import moco, simclr  # noqa: E402,F401
