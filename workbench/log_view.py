"""The log dock: one line per trainer log event, status change and stray output, all runs."""

from __future__ import annotations

import html
import time

from PySide6.QtGui import QFontDatabase
from PySide6.QtWidgets import QPlainTextEdit

LEVEL_COLOURS = {"error": "#c62828", "stderr": "#8d6e63", "warning": "#ef6c00", "status": "#1565c0"}
MAX_LINES = 5000


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
