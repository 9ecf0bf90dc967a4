"""The editor's input widgets: spin boxes and combos that ignore the wheel unless focused, and
spin boxes that tell ``on_input(text, ok)`` about every text typed in them, so a value the box
refuses (out of range, not a number) can be explained next to the field instead of vanishing."""

from __future__ import annotations

import math

from PySide6.QtGui import QValidator
from PySide6.QtWidgets import QAbstractSpinBox, QComboBox, QDoubleSpinBox, QSpinBox


class _NoWheelMixin:
    """Spin boxes and combos in a scroll area only take the wheel when focused (no silent edits)."""

    def wheelEvent(self, event):  # noqa: N802 - Qt override
        if self.hasFocus():
            super().wheelEvent(event)
        else:
            event.ignore()


def _report(box, text: str, ok: bool) -> None:
    """Tell the box's ``on_input(text, ok)`` (set by FieldEditor) what was typed."""
    callback = getattr(box, "on_input", None)
    if callback is not None:
        callback(text, ok)


class IntSpin(_NoWheelMixin, QSpinBox):
    """Integer spin box; text out of range or not a whole number is reported to ``on_input``
    (the field's inline note) instead of being dropped without a word."""

    def validate(self, text: str, pos: int):
        stripped = text.strip()
        if stripped in ("", "-", "+"):
            return QValidator.State.Intermediate, text, pos
        try:
            value = int(stripped)
        except ValueError:
            _report(self, text, False)
            return QValidator.State.Invalid, text, pos
        ok = self.minimum() <= value <= self.maximum()
        _report(self, text, ok)
        return (QValidator.State.Acceptable if ok else QValidator.State.Intermediate), text, pos


class Combo(_NoWheelMixin, QComboBox):
    """Combo box."""


class FloatSpin(_NoWheelMixin, QDoubleSpinBox):
    """Float spin box that shows values compactly (0.0005, 1e-06) and accepts any float text."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setDecimals(10)
        self.setStepType(QAbstractSpinBox.StepType.AdaptiveDecimalStepType)

    def textFromValue(self, value: float) -> str:  # noqa: N802 - Qt override
        return f"{value:.6g}"

    def valueFromText(self, text: str) -> float:  # noqa: N802 - Qt override
        try:
            return float(text)
        except ValueError:
            return self.value()

    def validate(self, text: str, pos: int):
        try:
            value = float(text)
        except ValueError:
            state = QValidator.State.Intermediate if text.strip() in ("", "-", ".", "-.") or \
                text.lower().endswith(("e", "e-", "e+")) else QValidator.State.Invalid
            if state == QValidator.State.Invalid:
                _report(self, text, False)
            return state, text, pos
        ok = self.minimum() <= value <= self.maximum() and math.isfinite(value)
        _report(self, text, ok)
        return (QValidator.State.Acceptable if ok else QValidator.State.Intermediate), text, pos
