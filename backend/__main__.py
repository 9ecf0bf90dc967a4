"""``python -m backend ...`` is the same as ``sslwb ...``."""

from .cli import entry

entry()
