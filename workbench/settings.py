"""Persistent GUI settings (QSettings): workspace folder, recent files, window layout, device.

Tests and screenshots point the store at an ini file (``use_ini_file`` or the ``SSLWB_SETTINGS``
environment variable) so they never touch the user's settings.
"""

from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtCore import QByteArray, QSettings

ORGANIZATION = "SSLWorkbench"
APPLICATION = "sslwb"
DEFAULT_WORKSPACE = Path.home() / "sslwb-workspace"
MAX_RECENT = 8

_ini_path: Path | None = None


def use_ini_file(path) -> None:
    """Store settings in the ini file ``path`` (None: back to the platform default store)."""
    global _ini_path
    _ini_path = Path(path) if path else None


def qsettings() -> QSettings:
    """The QSettings store in use."""
    path = _ini_path or (Path(os.environ["SSLWB_SETTINGS"]) if os.environ.get("SSLWB_SETTINGS") else None)
    if path is not None:
        return QSettings(str(path), QSettings.Format.IniFormat)
    return QSettings(ORGANIZATION, APPLICATION)


def workspace() -> Path:
    """The remembered workspace folder (default ~/sslwb-workspace)."""
    value = qsettings().value("workspace", "")
    return Path(value) if value else DEFAULT_WORKSPACE


def set_workspace(path) -> None:
    """Remember ``path`` as the workspace folder."""
    qsettings().setValue("workspace", str(Path(path)))


def recent_configs() -> list[str]:
    """Recently opened or saved config files, newest first (only those that still exist)."""
    value = qsettings().value("recent_configs", []) or []
    if isinstance(value, str):
        value = [value]
    return [v for v in value if Path(v).is_file()]


def add_recent_config(path) -> None:
    """Put ``path`` at the front of the recent config list."""
    path = str(Path(path))
    items = [path] + [p for p in recent_configs() if p != path]
    qsettings().setValue("recent_configs", items[:MAX_RECENT])


def value(key: str, default=None):
    """A plain stored value."""
    return qsettings().value(key, default)


def set_value(key: str, val) -> None:
    """Store a plain value."""
    qsettings().setValue(key, val)


def window_state() -> tuple[QByteArray | None, QByteArray | None]:
    """Saved (geometry, dock state) of the main window, or Nones."""
    s = qsettings()
    return s.value("window/geometry"), s.value("window/state")


def save_window_state(geometry: QByteArray, state: QByteArray) -> None:
    """Remember the main window's geometry and dock layout."""
    s = qsettings()
    s.setValue("window/geometry", geometry)
    s.setValue("window/state", state)


DEFAULT_STALL_TIMEOUT_S = 600.0  # a kNN pass or a data download on a CPU can be quiet for minutes


def stall_timeout_seconds() -> float:
    """Seconds without any trainer output after which a live run shows as ``stalled``."""
    try:
        seconds = float(qsettings().value("runs/stall_timeout_s", DEFAULT_STALL_TIMEOUT_S))
    except (TypeError, ValueError):
        return DEFAULT_STALL_TIMEOUT_S
    return seconds if seconds > 0 else DEFAULT_STALL_TIMEOUT_S


def set_stall_timeout_seconds(seconds: float) -> None:
    """Remember the stall timeout (seconds, > 0)."""
    if not seconds > 0:
        raise ValueError(f"the stall timeout must be a positive number of seconds, got {seconds!r}")
    qsettings().setValue("runs/stall_timeout_s", float(seconds))


def open_runs() -> list[str]:
    """Run directories whose tabs were open when the app last closed (those that still exist)."""
    value = qsettings().value("session/open_runs", []) or []
    if isinstance(value, str):
        value = [value]
    return [v for v in value if (Path(v) / "config.json").is_file()]


def set_open_runs(run_dirs) -> None:
    """Remember the run directories whose tabs are open, in tab order."""
    qsettings().setValue("session/open_runs", [str(Path(p)) for p in run_dirs])
