"""The log dock: one line per trainer log event, status change and stray output, all runs."""

from __future__ import annotations

import html
import time

from PySide6.QtGui import QFontDatabase
from PySide6.QtWidgets import QPlainTextEdit

from .plots import WARNING_COLOR

LEVEL_COLOURS = {"error": "#c62828", "stderr": "#8d6e63", "warning": "#ef6c00", "status": "#1565c0"}
MAX_LINES = 5000


def event_html(event: dict, muted: str = "#757575") -> str:
    """One trainer log / status / error event as a line of the run tab's log pane (HTML)."""
    kind = event.get("kind")
    stamp = time.strftime("%H:%M:%S", time.localtime(float(event.get("time", 0.0))))
    if kind == "status":
        state, message = event.get("state", ""), event.get("message", "")
        level, text = "status", message if message.startswith(state) else f"{state}: {message}"
    elif kind == "error":
        level, text = "error", f"error: {event.get('message', '')}"
    else:
        level = "warning" if event.get("level") == "warning" else "info"
        text = f"{'warning: ' if level == 'warning' else ''}{event.get('message', '')}"
    body = html.escape(f"{stamp}  {text}")
    color = {"warning": "#d89614", "error": WARNING_COLOR, "status": muted}.get(level)
    if color:
        weight = "bold" if level in ("warning", "error") else "normal"
        body = f"<span style='color:{color}; font-weight:{weight}'>{body}</span>"
    return body


class RunLogPane(QPlainTextEdit):
    """A run tab's log pane: read-only, bounded, one line per trainer log / status / error event."""

    def __init__(self, max_lines: int, parent=None):
        super().__init__(parent)
        self.setReadOnly(True)
        self.setMaximumBlockCount(max_lines)
        self.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.setPlaceholderText("Trainer log")
        self.follow = True  # keep the newest line in view; scrolling up stops it, back down resumes
        bar = self.verticalScrollBar()
        bar.valueChanged.connect(self._scrolled)
        bar.rangeChanged.connect(self._range_changed)

    def _scrolled(self, value: int) -> None:
        self.follow = value >= self.verticalScrollBar().maximum() - 1

    def _range_changed(self, _low: int, high: int) -> None:
        if self.follow:  # new lines, a resize or the first layout of a pane filled while hidden
            self.verticalScrollBar().setValue(high)

    def append_events(self, events, muted: str = "#757575") -> None:
        """Add one line per event (``muted``: the theme's colour for status lines)."""
        follow = self.follow
        for event in events:
            self.appendHtml(event_html(event, muted))
        if follow:
            self.follow = True
            self.verticalScrollBar().setValue(self.verticalScrollBar().maximum())


class LogView(QPlainTextEdit):
    """Read-only, bounded, coloured by level."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setReadOnly(True)
        self.setMaximumBlockCount(MAX_LINES)
        self.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.setPlaceholderText("Trainer output of every run appears here.")
        self.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)

    def append_line(self, source: str, level: str, text: str) -> None:
        """Add ``text`` from ``source`` (a run id or 'gui') at ``level``."""
        stamp = time.strftime("%H:%M:%S")
        body = html.escape(f"{stamp} [{source}] {text}")
        colour = LEVEL_COLOURS.get(level)
        self.appendHtml(f"<span style='color:{colour}'>{body}</span>" if colour else body)

    def lines(self) -> list[str]:
        """The plain text lines shown (for tests)."""
        return self.toPlainText().splitlines()
