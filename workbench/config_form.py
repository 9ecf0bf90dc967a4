"""A config editor generated from the ExperimentConfig schema: no hand-written form per method.

One collapsible section per sub-config, one editor per leaf field chosen by its type (combo for
choices, spin boxes bounded by ge/gt/le/lt, check box, line edit, a spin box per list element),
tooltips from the help text, and the field's validation sentences in red under it. Fields that do
not apply (other methods, other data sources) are hidden. The widgets observe a ``ConfigModel``.
``set_filter`` narrows the form to the fields whose key or label matches a search (``field_search``).
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFormLayout, QLabel, QSizePolicy, QTabWidget, QToolButton, QVBoxLayout, QWidget

from backend.config import field_meta

from .config_model import ConfigModel, inherited_path, schema
from .field_search import FormFilter, field_matches
from .field_editor import (FIELD_NOTES, Combo, FieldEditor, FloatSpin, IntSpin, bounds_text,  # noqa: F401
                           grad_accum_note, humanize, tooltip)

# The augmentation sections shown as tabs (shared pipeline + each view's overrides).
AUGMENT_TABS = {"augment": "Shared", "augment.view1": "View 1", "augment.view2": "View 2",
                "augment.local": "Local views"}
SECTION_TITLES = {"augment.view1": "View 1 (first global view)", "augment.view2": "View 2 (second global view)",
                  "augment.local": "Local views (multi-crop)"}


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


def method_first(sections: dict) -> dict:
    """The schema's sections with the method's own (its hyperparameters) first, the rest in order."""
    return {name: sections[name] for name in sorted(sections, key=lambda name: name != "method")}


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
        self.augment_tabs: QTabWidget | None = None
        self.tab_titles: dict[str, str] = {}   # augment section -> its tab's plain title
        self.filter = FormFilter(self)
        for name, (help_text, leaves) in method_first(schema()).items():
            section = Section(SECTION_TITLES.get(name, humanize(name)), help_text)
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
            if name in AUGMENT_TABS:  # the shared pipeline and each view's overrides: one tab each
                if self.augment_tabs is None:
                    self.augment_tabs = QTabWidget()
                    self.augment_tabs.setObjectName("augmentTabs")
                    # as tall as its pages, not more: a search leaves short pages, the stretch takes the rest
                    self.augment_tabs.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Preferred)
                    layout.addWidget(self.augment_tabs)
                self.augment_tabs.addTab(section, AUGMENT_TABS[name])
                self.tab_titles[name] = AUGMENT_TABS[name]
            else:
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
        self._show_inherited()
        self._update_visibility()

    def _show_inherited(self) -> None:
        """Unset per-view overrides show the shared value they take."""
        for path, editor in self.editors.items():
            shared = inherited_path(path)
            if shared is not None:
                editor.show_inherited(self.model.value(shared))

    def _on_value(self, path: str, value) -> None:
        if path == "method.name":
            self._apply_method_meta()
        editor = self.editors.get(path)
        if editor is not None and editor.value() != value:
            editor.set_value(value)
        if path.startswith("augment."):
            self._show_inherited()
        self._update_visibility()

    def _apply_method_meta(self) -> None:
        """Method hyperparameters take the help and bounds the selected method declares."""
        for path, editor in self.editors.items():
            if path.startswith("method.") and self.model.visible(path):
                meta = field_meta(path, self.model.method)
                editor.set_meta(meta)
                self.labels[path].setToolTip(tooltip(path, meta))

    def row_path(self, section: Section, row: int) -> str | None:
        """The field path edited in ``row`` of ``section`` (None for a row without one)."""
        item = section.form.itemAt(row, QFormLayout.ItemRole.FieldRole)
        widget = item.widget() if item else None
        return getattr(widget, "path", None) or next(
            (p for p, w in self.custom_widgets.items() if w is widget), None)

    def _update_visibility(self) -> None:
        """Rows follow the model (fields that apply) and the search filter; empty sections hide."""
        query = self.filter.query
        counts = {}
        for name, section in self.sections.items():
            count = 0
            for row in range(section.form.rowCount()):
                path = self.row_path(section, row)
                visible = self.model.visible(path) if path else True
                if visible and query and path:
                    visible = field_matches(query, path, self.labels[path].text())
                section.form.setRowVisible(row, visible)
                count += visible
            counts[name] = count
            if name not in self.tab_titles:   # a tab's page: its tab is shown or hidden instead
                section.setVisible(count > 0)
        self.filter.show_counts(counts)

    def set_filter(self, text: str) -> list[str]:
        """Show only the fields whose key or label matches ``text`` (every word of it; '' shows the
        whole form again, folded and tabbed as before the search). Returns the matching paths in
        the order they appear."""
        self.filter.set_query(text)
        self._update_visibility()
        return self.matching_paths()

    def matching_paths(self) -> list[str]:
        """Paths of the fields shown now, in form order (every shown field with no search)."""
        out = []
        for section in self.sections.values():
            for row in range(section.form.rowCount()):
                path = self.row_path(section, row)
                if path and section.form.isRowVisible(row):
                    out.append(path)
        return out

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
        name = ".".join(path.split(".")[:2])
        section = self.sections.get(name) or self.sections.get(path.split(".")[0])
        if section is not None:
            section.set_expanded(True)
            if self.augment_tabs is not None and self.augment_tabs.indexOf(section) >= 0:
                self.augment_tabs.setCurrentWidget(section)
        target = getattr(widget, "input", widget)
        target.setFocus(Qt.FocusReason.OtherFocusReason)
