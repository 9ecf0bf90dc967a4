"""The editor's method picker and method card.

``MethodPicker`` is a combo box whose list groups the registered methods by family (pretext,
contrastive, distillation, ...) under header rows that cannot be chosen, so the arrow keys and
type-ahead move from method to method across the groups. ``MethodCard`` shows what the selected
method learns (its SPEC help), its paper and its hyperparameters with their defaults. Both read
the torch-free catalogue (``backend.methods.method_specs``); every text is escaped.
"""

from __future__ import annotations

import html

from PySide6.QtCore import Qt
from PySide6.QtGui import QFont, QStandardItem, QStandardItemModel
from PySide6.QtWidgets import QFrame, QLabel, QStyle, QStyledItemDelegate, QVBoxLayout

from backend.methods import FAMILIES, method_specs

from .spin_inputs import Combo

HEADER_ROLE = Qt.ItemDataRole.UserRole + 1   # True on a family header row
INDENT = 14                                   # pixels methods are indented under their family
MAX_PARAMS = 6                                # hyperparameters listed on the card


def family_title(family: str) -> str:
    """'redundancy reduction' -> 'Redundancy reduction'."""
    return family[:1].upper() + family[1:]


def grouped_methods(specs: dict | None = None) -> list[tuple[str, list]]:
    """[(family, [spec, ...])] in the catalogue's family order, methods by label; families
    without a method are left out (unknown families, if any, come last)."""
    specs = method_specs() if specs is None else specs
    order = {family: i for i, family in enumerate(FAMILIES)}
    groups: dict[str, list] = {}
    for spec in specs.values():
        groups.setdefault(spec.family, []).append(spec)
    families = sorted(groups, key=lambda f: (order.get(f, len(order)), f))
    return [(f, sorted(groups[f], key=lambda s: s.label.lower())) for f in families]


def method_tooltip(spec) -> str:
    """Rich-text tooltip of one method row: help, family and paper (escaped)."""
    text = f"{html.escape(spec.help)} <i>({html.escape(spec.family)})</i>"
    if spec.paper:
        text += f"<br>{html.escape(spec.paper)}"
    return text


class _GroupDelegate(QStyledItemDelegate):
    """Draws family headers as small bold grey captions and indents the methods under them."""

    def initStyleOption(self, option, index):  # noqa: N802 - Qt override
        super().initStyleOption(option, index)
        if index.data(HEADER_ROLE):
            option.font.setBold(True)
            option.font.setPointSizeF(max(6.0, option.font.pointSizeF() - 1))
            option.palette.setColor(option.palette.ColorRole.Text, option.palette.color(
                option.palette.ColorGroup.Disabled, option.palette.ColorRole.Text))
            option.state &= ~QStyle.StateFlag.State_Selected
        else:
            option.rect.adjust(INDENT, 0, 0, 0)

    def sizeHint(self, option, index):  # noqa: N802 - Qt override
        size = super().sizeHint(option, index)
        size.setHeight(size.height() + (6 if index.data(HEADER_ROLE) else 4))
        return size


class MethodPicker(Combo):
    """A combo of the registered methods grouped by family under unselectable header rows.
    ``findData(name)`` / ``currentData()`` give method names (headers hold no data)."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setModel(QStandardItemModel(self))
        self.setItemDelegate(_GroupDelegate(self))
        self.setMaxVisibleItems(30)
        self.fill()

    def fill(self) -> None:
        """(Re)build the list from the catalogue, keeping the current method."""
        current = self.currentData()
        self.blockSignals(True)
        model = self.model()
        model.clear()
        for family, specs in grouped_methods():
            header = QStandardItem(family_title(family))
            header.setFlags(Qt.ItemFlag.NoItemFlags)
            header.setData(True, HEADER_ROLE)
            font = QFont(self.font())
            font.setBold(True)
            header.setFont(font)
            model.appendRow(header)
            for spec in specs:
                item = QStandardItem(spec.label)
                item.setData(spec.name, Qt.ItemDataRole.UserRole)
                item.setData(method_tooltip(spec), Qt.ItemDataRole.ToolTipRole)
                model.appendRow(item)
        idx = self.findData(current) if current is not None else -1
        self.setCurrentIndex(idx if idx >= 0 else self.first_method_row())
        self.blockSignals(False)

    def first_method_row(self) -> int:
        """Row of the first method (the row after the first header)."""
        return next((i for i in range(self.count()) if self.itemData(i) is not None), -1)

    def add_unknown(self, name: str) -> int:
        """Add a row for a method the catalogue does not know (e.g. from an old config file)."""
        self.addItem(name, name)
        return self.count() - 1


def card_html(spec) -> str:
    """The card's rich text for ``spec`` (every value escaped)."""
    esc = html.escape
    parts = [f"<b>{esc(spec.label)}</b> <span style='color:#5f6368'>· {esc(spec.family)}"
             f"{' · uses labels' if spec.uses_labels else ''}</span>"]
    if spec.help:
        parts.append(esc(spec.help))
    if spec.paper:
        parts.append(f"<span style='color:#5f6368'>Paper:</span> <i>{esc(spec.paper)}</i>")
    params = list(spec.params.items())
    if params:
        shown = ", ".join(f"{esc(key)} = <tt>{esc(format_default(p.default))}</tt>"
                          for key, p in params[:MAX_PARAMS])
        more = f", … {len(params) - MAX_PARAMS} more" if len(params) > MAX_PARAMS else ""
        parts.append(f"<span style='color:#5f6368'>Hyperparameters:</span> {shown}{more}")
    else:
        parts.append("<span style='color:#5f6368'>No hyperparameters of its own.</span>")
    return "<br>".join(parts)


def format_default(value) -> str:
    """A default as the form shows it (0.0005, 4096, true)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


class MethodCard(QFrame):
    """A short card about one method: what it learns, its paper, its main hyperparameters."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("methodCard")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 6, 8, 6)
        self.text = QLabel()
        self.text.setObjectName("methodCardText")
        self.text.setWordWrap(True)
        self.text.setTextFormat(Qt.TextFormat.RichText)
        self.text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.text)
        self.name = ""

    def show_method(self, name: str) -> None:
        """Describe method ``name`` (a name the catalogue does not know says so)."""
        self.name = name
        spec = method_specs().get(name)
        if spec is None:
            self.text.setText(f"<b>{html.escape(str(name))}</b>: not a registered method")
            self.setToolTip("")
            return
        self.text.setText(card_html(spec))
        self.setToolTip("<br>".join(f"<b>{html.escape(key)}</b>: {html.escape(p.help)}"
                                    for key, p in spec.params.items()))
