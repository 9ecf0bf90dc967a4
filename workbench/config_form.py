"""A config editor generated from the ExperimentConfig schema: no hand-written form per method.

One collapsible section per sub-config, one editor per leaf field chosen by its type (combo for
choices, spin boxes bounded by ge/gt/le/lt, check box, line edit, a spin box per list element),
tooltips from the help text, and the field's validation sentences in red under it. Fields that do
not apply (other methods, other data sources) are hidden. The widgets observe a ``ConfigModel``.
"""

from __future__ import annotations

import html

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QCheckBox, QComboBox, QFormLayout,
                               QHBoxLayout, QLabel, QLineEdit, QSizePolicy, QToolButton,
                               QVBoxLayout, QWidget)

from backend.config import applies_to, field_meta

from .config_model import ConfigModel, schema
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
        self.path, self.kind, self.meta = path, kind, meta
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(1)
        self.input = self._make_input()
        self.input.setToolTip(tooltip(path, meta))
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
    def value(self):
        """The value shown, in the field's type."""
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
        """Show ``value`` without emitting ``edited``."""
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


class Section(QWidget):
    """A collapsible titled block: a header button with an arrow, and a form body."""

    def __init__(self, title: str, subtitle: str = "", parent=None):
        super().__init__(parent)
        self.setObjectName("configSection")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 4)
        layout.setSpacing(2)
        self.header = QToolButton()
        self.header.setObjectName("sectionHeader")
        self.header.setText(f"{title}")
        self.header.setToolTip(subtitle)
        self.header.setCheckable(True)
        self.header.setChecked(True)
        self.header.setArrowType(Qt.ArrowType.DownArrow)
        self.header.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.header.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.header.toggled.connect(self.set_expanded)
        layout.addWidget(self.header)
        self.body = QWidget()
        self.form = QFormLayout(self.body)
        self.form.setContentsMargins(14, 2, 4, 2)
        self.form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        self.form.setLabelAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        layout.addWidget(self.body)

    def set_expanded(self, expanded: bool) -> None:
        """Show or fold the body."""
        self.header.setChecked(expanded)
        self.header.setArrowType(Qt.ArrowType.DownArrow if expanded else Qt.ArrowType.RightArrow)
        self.body.setVisible(expanded)


class ConfigForm(QWidget):
    """Every section of the editable schema (``config_model.schema``: the config sections and
    every registered method's hyperparameters) as generated editors bound to a ``ConfigModel``.

    ``skip``: leaf paths edited elsewhere (e.g. method.name by the method picker);
    ``custom``: path -> factory(model) returning a widget that edits that field itself."""

    def __init__(self, model: ConfigModel, *, skip=(), custom=None, collapsed=(), parent=None):
        super().__init__(parent)
        self.model = model
        self.editors: dict[str, FieldEditor] = {}
        self.custom_widgets: dict[str, QWidget] = {}
        self.sections: dict[str, Section] = {}
        self.labels: dict[str, QLabel] = {}
        custom = custom or {}
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        for name, (help_text, leaves) in schema().items():
            section = Section(humanize(name), help_text)
            self.sections[name] = section
            for path, info in leaves.items():
                if path in skip:
                    continue
                if path in custom:
                    widget = custom[path](model)
                    self.custom_widgets[path] = widget
                else:
                    widget = FieldEditor(path, info.type, info.meta)
                    widget.edited.connect(lambda v, p=path: self.model.set_value(p, v))
                    self.editors[path] = widget
                label = QLabel(humanize(info.name))
                label.setToolTip(tooltip(path, info.meta))
                self.labels[path] = label
                section.form.addRow(label, widget)
            section.set_expanded(name not in collapsed)
            layout.addWidget(section)
        layout.addStretch(1)
        model.valueChanged.connect(self._on_value)
        model.reset.connect(self.refresh)
        model.validated.connect(self._show_errors)
        self.refresh()
        self._show_errors()

    def refresh(self) -> None:
        """Show every value of the model and update which fields are visible."""
        self._apply_method_meta()
        for path, editor in self.editors.items():
            editor.set_value(self.model.value(path))
        self._update_visibility()

    def _on_value(self, path: str, value) -> None:
        if path == "method.name":
            self._apply_method_meta()
        editor = self.editors.get(path)
        if editor is not None and editor.value() != value:
            editor.set_value(value)
        self._update_visibility()

    def _apply_method_meta(self) -> None:
        """Method hyperparameters take the help and bounds the selected method declares."""
        for path, editor in self.editors.items():
            if path.startswith("method.") and self.model.visible(path):
                meta = field_meta(path, self.model.method)
                editor.set_meta(meta)
                self.labels[path].setToolTip(tooltip(path, meta))

    def _update_visibility(self) -> None:
        for name, section in self.sections.items():
            any_visible = False
            for row in range(section.form.rowCount()):
                item = section.form.itemAt(row, QFormLayout.ItemRole.FieldRole)
                widget = item.widget() if item else None
                path = getattr(widget, "path", None) or next(
                    (p for p, w in self.custom_widgets.items() if w is widget), None)
                visible = self.model.visible(path) if path else True
                section.form.setRowVisible(row, visible)
                any_visible |= visible
            section.setVisible(any_visible)

    def _show_errors(self) -> None:
        for path, editor in self.editors.items():
            editor.set_errors(self.model.field_errors.get(path, []))
        for path, widget in self.custom_widgets.items():
            if hasattr(widget, "set_errors"):
                widget.set_errors(self.model.field_errors.get(path, []))

    def focus_field(self, path: str) -> None:
        """Unfold the field's section and give the field keyboard focus."""
        widget = self.editors.get(path) or self.custom_widgets.get(path)
        if widget is None:
            return
        section = self.sections.get(path.split(".")[0])
        if section is not None:
            section.set_expanded(True)
        target = getattr(widget, "input", widget)
        target.setFocus(Qt.FocusReason.OtherFocusReason)
