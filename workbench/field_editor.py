"""One generated config field editor: the input widget chosen by the field's type (combo for
choices, spin boxes bounded by ge/gt/le/lt, check box, line edit, a spin box per list element; an
"own" box for optional per-view overrides), its tooltip, grey note and red error line."""

from __future__ import annotations

import html

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QCheckBox, QComboBox, QHBoxLayout, QLabel, QLineEdit, QVBoxLayout, QWidget

from backend.config import applies_to
from backend.config_fields import optional_inner

from .spin_inputs import Combo, FloatSpin, IntSpin

INT_MAX = 2**31 - 1
FLOAT_MAX = 1e9


ABBREVIATIONS = {"lr": "LR", "knn": "kNN", "lars": "LARS", "bn": "BN", "dclw": "DCLW", "amp": "AMP",
                 "hflip": "H-flip", "dim": "dim"}


def humanize(name: str) -> str:
    """'synthetic_train_size' -> 'Synthetic train size', 'knn_k' -> 'kNN k', 'lr' -> 'LR'."""
    words = [ABBREVIATIONS.get(w, w) for w in name.split("_")]
    first = words[0] if words[0] in ABBREVIATIONS.values() else words[0][:1].upper() + words[0][1:]
    return " ".join([first] + words[1:])


def bounds_text(meta: dict) -> str:
    """'> 0, <= 1' style summary of a field's range."""
    parts = [f"{sym} {meta[key]:g}" for key, sym in (("gt", ">"), ("ge", "≥"), ("lt", "<"), ("le", "≤"))
             if meta.get(key) is not None]
    return ", ".join(parts)


def tooltip(path: str, meta: dict) -> str:
    """Help text, field path, range and the methods it applies to (from the registry), as rich text."""
    lines = [html.escape(meta.get("help", "")), f"<br><i>{path}</i>"]
    if bounds_text(meta):
        lines.append(f" &nbsp; range {bounds_text(meta)}")
    methods = applies_to(path)
    if methods:
        lines.append(f"<br>applies to: {', '.join(methods)}")
    return "".join(lines)


def grad_accum_note(steps) -> str:
    """What gradient accumulation does not change (shown while it is on)."""
    if not isinstance(steps, int) or steps <= 1:
        return ""
    return (f"Each batch runs as {steps} micro-batches of batch_size / {steps} images, with the lr scaled for the "
            "whole batch. Contrastive negatives and batch-norm statistics stay per micro-batch, unless the "
            "method keeps a queue (MoCo, NNCLR).")


def range_note(meta: dict, kind, text: str, box) -> str:
    """Why typed ``text`` was not taken, from the field's metadata: 'must be > 0 (got -1)'."""
    bounds = bounds_text(meta) if kind is not list else ""
    bounds = bounds or f"between {box.minimum():g} and {box.maximum():g}"
    whole = kind is int
    try:
        number = float(text)
    except ValueError:
        return f"must be a {'whole ' if whole else ''}number {bounds} (got {text.strip()!r})"
    if whole and not number.is_integer():
        return f"must be a whole number {bounds} (got {text.strip()})"
    return f"must be {bounds} (got {text.strip()})"


# Grey notes under a field, from its current value ("" hides the note).
FIELD_NOTES = {"optim.grad_accum_steps": grad_accum_note}


class FieldEditor(QWidget):
    """One leaf field: an input widget, its grey note (FIELD_NOTES) and its red error line. Emits
    ``edited(value)``."""

    edited = Signal(object)

    def __init__(self, path: str, kind, meta: dict, parent=None):
        super().__init__(parent)
        inner = optional_inner(kind)
        # An optional field (a per-view override): an "own value" box; unchecked = None (shared value).
        self.optional = inner is not None
        self.path, self.kind, self.meta = path, inner or kind, meta
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(1)
        self.input = self._make_input()
        self.input.setToolTip(tooltip(path, meta))
        self.override = None
        if self.optional:
            row = QHBoxLayout()
            row.setContentsMargins(0, 0, 0, 0)
            self.override = QCheckBox("own")
            self.override.setToolTip("Checked: this view's own value; unchecked: the shared [augment] value")
            self.override.toggled.connect(self._override_toggled)
            row.addWidget(self.override)
            row.addWidget(self.input, 1)
            layout.addLayout(row)
            self.input.setEnabled(False)
        else:
            layout.addWidget(self.input)
        self.error_label = QLabel()
        self.error_label.setObjectName("fieldError")
        self.error_label.setTextFormat(Qt.TextFormat.PlainText)  # sentences hold '<', '&'
        self.error_label.setWordWrap(True)
        self.error_label.setStyleSheet("color: #c62828; font-size: 11px;")
        self.error_label.hide()
        layout.addWidget(self.error_label)
        self.note_label = QLabel()
        self.note_label.setObjectName("fieldNote")
        self.note_label.setTextFormat(Qt.TextFormat.PlainText)
        self.note_label.setWordWrap(True)
        self.note_label.setStyleSheet("color: #5f6368; font-size: 11px;")
        self.note_label.hide()
        layout.addWidget(self.note_label)
        self.input_note = QLabel()   # what was wrong with typed text the box did not take
        self.input_note.setObjectName("fieldInputNote")
        self.input_note.setTextFormat(Qt.TextFormat.PlainText)
        self.input_note.setWordWrap(True)
        self.input_note.setStyleSheet("color: #ef6c00; font-size: 11px;")
        self.input_note.hide()
        layout.addWidget(self.input_note)
        self.edited.connect(lambda _v: self.input_note.hide())
        if path in FIELD_NOTES:
            self.edited.connect(self._update_note)

    # ---- construction ------------------------------------------------------------------
    def _spin_range(self, box, kind) -> None:
        lo = next((self.meta[k] for k in ("ge", "gt") if self.meta.get(k) is not None), None)
        hi = next((self.meta[k] for k in ("le", "lt") if self.meta.get(k) is not None), None)
        top = INT_MAX if kind is int else FLOAT_MAX
        box.setRange(lo if lo is not None else -top, hi if hi is not None else top)

    def set_meta(self, meta: dict) -> None:
        """Take another declaration of the field (a method's own help and bounds)."""
        if meta == self.meta:
            return
        self.meta = meta
        self.input.setToolTip(tooltip(self.path, meta))
        if self.kind in (int, float) and not meta.get("choices"):
            value = self.value()
            self.input.blockSignals(True)
            self._spin_range(self.input, self.kind)
            self.input.setValue(value)
            self.input.blockSignals(False)

    def _spin(self, kind):
        box = IntSpin() if kind is int else FloatSpin()
        self._spin_range(box, kind)
        box.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        box.setMinimumWidth(90)
        box.valueChanged.connect(lambda _v: self.edited.emit(self.value()))
        box.on_input = lambda text, ok, b=box: self._typed(b, text, ok)
        return box

    def _typed(self, box, text: str, ok: bool) -> None:
        """Show (or, for good text typed in the box, hide) the note on rejected input."""
        if ok:
            if box.hasFocus():
                self.input_note.hide()
            return
        self.input_note.setText(range_note(self.meta, self.kind, text, box))
        self.input_note.show()

    def _make_input(self) -> QWidget:
        kind, meta = self.kind, self.meta
        if kind is bool:
            box = QCheckBox()
            box.toggled.connect(lambda v: self.edited.emit(bool(v)))
            return box
        if meta.get("choices"):
            box = Combo()
            box.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
            for choice in meta["choices"]:
                box.addItem(str(choice), choice)
            box.currentIndexChanged.connect(lambda _i: self.edited.emit(self.value()))
            return box
        if meta.get("suggestions"):
            box = Combo()
            box.setEditable(True)
            box.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
            for choice in meta["suggestions"]:
                box.addItem(str(choice), choice)
            box.currentTextChanged.connect(lambda _t: self.edited.emit(self.value()))
            return box
        if kind in (int, float):
            return self._spin(kind)
        if kind is list:
            holder = QWidget()
            row = QHBoxLayout(holder)
            row.setContentsMargins(0, 0, 0, 0)
            row.setSpacing(4)
            holder.spins = []
            for _ in range(3 if self.path.endswith((".mean", ".std")) else 2):
                spin = self._spin(float)
                spin.setRange(0.0, 1000.0)
                spin.setMinimumWidth(60)
                row.addWidget(spin)
                holder.spins.append(spin)
            return holder
        edit = QLineEdit()
        edit.setClearButtonEnabled(True)
        edit.textEdited.connect(lambda t: self.edited.emit(t))
        return edit

    # ---- values ------------------------------------------------------------------------
    def _override_toggled(self, on: bool) -> None:
        self.input.setEnabled(on)
        self.edited.emit(self.value())

    def show_inherited(self, value) -> None:
        """An unset optional field: show the shared ``value`` greyed out (not as its own value)."""
        if self.optional and not self.override.isChecked() and value is not None:
            self._show(value)

    def value(self):
        """The value shown, in the field's type (None for an optional field left unset)."""
        if self.optional and not self.override.isChecked():
            return None
        w = self.input
        if self.kind is bool:
            return w.isChecked()
        if isinstance(w, QComboBox):
            return w.currentText() if w.isEditable() else w.currentData()
        if self.kind is list:
            return [float(s.value()) for s in w.spins]
        if self.kind is int:
            return int(w.value())
        if self.kind is float:
            return float(w.value())
        return w.text()

    def set_value(self, value) -> None:
        """Show ``value`` without emitting ``edited`` (None on an optional field: unset)."""
        if self.optional:
            self.override.blockSignals(True)
            self.override.setChecked(value is not None)
            self.override.blockSignals(False)
            self.input.setEnabled(value is not None)
            if value is None:
                return
        self._show(value)

    def _show(self, value) -> None:
        w = self.input
        widgets = w.spins if self.kind is list else [w]
        for item in widgets:
            item.blockSignals(True)
        try:
            if self.kind is bool:
                w.setChecked(bool(value))
            elif isinstance(w, QComboBox) and w.isEditable():
                w.setCurrentText(str(value))
            elif isinstance(w, QComboBox):
                idx = w.findData(value)
                if idx < 0:
                    w.addItem(str(value), value)
                    idx = w.count() - 1
                w.setCurrentIndex(idx)
            elif self.kind is list:
                for spin, v in zip(w.spins, list(value) + [0.0] * len(w.spins)):
                    spin.setValue(float(v))
            elif self.kind in (int, float):
                w.setValue(value)
            elif w.text() != value:
                w.setText(str(value))
        finally:
            for item in widgets:
                item.blockSignals(False)
        if self.path in FIELD_NOTES:
            self._update_note(self.value())
        self.input_note.hide()

    def _update_note(self, value) -> None:
        note = FIELD_NOTES[self.path](value) if self.path in FIELD_NOTES else ""
        self.note_label.setText(note)
        self.note_label.setVisible(bool(note))

    def set_errors(self, errors: list[str]) -> None:
        """Show the field's validation sentences (empty list hides the line)."""
        self.error_label.setText("\n".join(errors))
        self.error_label.setVisible(bool(errors))
        self.input.setProperty("invalid", bool(errors))
        self.input.style().unpolish(self.input)
        self.input.style().polish(self.input)
