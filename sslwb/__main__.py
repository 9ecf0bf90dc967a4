"""``python -m sslwb ...`` is the same as ``sslwb ...``."""

from .cli import entry

entry()
