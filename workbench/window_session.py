"""What the main window keeps between sessions beyond Qt's own state: a restored geometry that
fits the screen it lands on, and where the shipped documentation is."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QRect
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QWidget

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def clamp_to_screen(window: QWidget) -> None:
    """Shrink and move ``window`` so its frame lies inside the available geometry of its screen
    (a geometry saved at another scale factor or on a larger monitor can be bigger than it)."""
    screen = window.screen() or QGuiApplication.primaryScreen()
    if screen is None:
        return
    avail: QRect = screen.availableGeometry()
    frame = window.frameGeometry()
    extra_w = max(0, frame.width() - window.width())
    extra_h = max(0, frame.height() - window.height())
    width = min(window.width(), avail.width() - extra_w)
    height = min(window.height(), avail.height() - extra_h)
    if (width, height) != (window.width(), window.height()):
        window.resize(max(200, width), max(150, height))
    frame = window.frameGeometry()
    x = min(max(frame.x(), avail.x()), avail.x() + avail.width() - frame.width())
    y = min(max(frame.y(), avail.y()), avail.y() + avail.height() - frame.height())
    if (x, y) != (frame.x(), frame.y()):
        window.move(x, y)


def documentation_path() -> Path | None:
    """The documentation shipped with the package: README.md, else the docs folder."""
    for candidate in (PROJECT_ROOT / "README.md", PROJECT_ROOT / "docs"):
        if candidate.exists():
            return candidate
    return None
