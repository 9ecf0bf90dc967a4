"""Finding a field in the experiment form: the match rule (every word of the search in the field's
key or label), the form's filter state (sections unfolded and tabs narrowed while a search is on,
restored exactly when it is cleared) and the search box above the form ("Find a field…", Ctrl+F;
Enter jumps to the first match, Esc clears)."""

from __future__ import annotations

import html

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor, QIcon, QKeySequence, QPainter, QPen, QPixmap, QShortcut
from PySide6.QtWidgets import QLabel, QLineEdit, QVBoxLayout, QWidget


def field_matches(query: str, path: str, label: str) -> bool:
    """Whether every word of ``query`` is in the field's key (``optim.warmup_lr``, also read with
    spaces for underscores) or its label (``Warmup LR``), ignoring case."""
    words = query.lower().split()
    hay = f"{path}\n{path.replace('_', ' ')}\n{label}".lower()
    return all(word in hay for word in words)


def magnifier_icon(colour: QColor, size: int = 16) -> QIcon:
    """A drawn magnifying glass (icon themes are not available everywhere)."""
    pixmap = QPixmap(size, size)
    pixmap.fill(QColor(0, 0, 0, 0))
    painter = QPainter(pixmap)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setPen(QPen(colour, 1.6))
    r = size * 0.36
    painter.drawEllipse(int(size * 0.12), int(size * 0.12), int(2 * r), int(2 * r))
    painter.setPen(QPen(colour, 2.2))
    painter.drawLine(int(size * 0.12 + 1.7 * r), int(size * 0.12 + 1.7 * r), int(size * 0.9), int(size * 0.9))
    painter.end()
    return QIcon(pixmap)


class FormFilter:
    """The search state of a ``ConfigForm``: the query and, while one is on, how the form looked
    before (which sections were folded, which augmentation tab was current) to restore on clear."""

    def __init__(self, form):
        self.form = form
        self.query = ""
        self._saved: tuple[dict[str, bool], int] | None = None
        self._restore_tab = -1

    def set_query(self, text: str) -> None:
        """Start, change or (``''``) end the search; the form's visibility is updated by the caller."""
        query = " ".join(text.split())
        form = self.form
        if query and self._saved is None:  # the form as it was: restored when the search ends
            tabs = form.augment_tabs
            self._saved = ({name: s.header.isChecked() for name, s in form.sections.items()},
                           tabs.currentIndex() if tabs is not None else -1)
        self.query = query
        if query:
            for section in form.sections.values():
                section.set_expanded(True)   # the folded state is in _saved, restored when the search ends
        elif self._saved is not None:
            expanded, tab = self._saved
            self._saved = None
            for name, section in form.sections.items():
                section.set_expanded(expanded[name])
            self._restore_tab = tab   # once its tab is shown again (show_counts)

    def show_counts(self, counts: dict[str, int]) -> None:
        """Augmentation tabs: while searching, a tab shows its match count and a tab without a
        match is hidden (the first tab with one is selected when the current one has none)."""
        tabs = self.form.augment_tabs
        if tabs is None:
            return
        first = -1
        for name, title in self.form.tab_titles.items():
            page = self.form.sections[name]
            page.body.layout().activate()   # a page not shown keeps a stale size hint otherwise
            page.layout().activate()
            index = tabs.indexOf(page)
            count = counts.get(name, 0)
            tabs.setTabText(index, f"{title} ({count})" if self.query and count else title)
            tabs.setTabVisible(index, count > 0 or not self.query)
            if count and first < 0:
                first = index
        tabs.updateGeometry()
        if self.query:
            tabs.setVisible(first >= 0)
            current = next((n for n in self.form.tab_titles if self.form.sections[n] is tabs.currentWidget()), "")
            if first >= 0 and not counts.get(current, 0):
                tabs.setCurrentIndex(first)
        else:
            tabs.setVisible(True)
            if self._restore_tab >= 0:
                tabs.setCurrentIndex(self._restore_tab)
                self._restore_tab = -1


class FieldSearch(QWidget):
    """The search box above the form and the line under it saying how many fields match (or that
    none does). ``activated(path)`` when Enter is pressed with a match: the first matching field."""

    activated = Signal(str)

    def __init__(self, form, parent=None):
        super().__init__(parent)
        self.form = form
        self.matches: list[str] = []
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(1)
        self.edit = QLineEdit()
        self.edit.setObjectName("fieldSearch")
        self.edit.setPlaceholderText("Find a field…  (Ctrl+F)")
        self.edit.setClearButtonEnabled(True)
        grey = self.edit.palette().color(self.edit.palette().ColorRole.PlaceholderText)
        self.edit.addAction(magnifier_icon(grey), QLineEdit.ActionPosition.LeadingPosition)
        self.edit.setToolTip("Show only the fields whose key (e.g. optim.lr) or label contains every word "
                             "typed here. Enter: go to the first match; Esc: clear")
        layout.addWidget(self.edit)
        self.status = QLabel()
        self.status.setObjectName("fieldSearchStatus")
        self.status.setTextFormat(Qt.TextFormat.RichText)
        self.status.hide()
        layout.addWidget(self.status)
        self.edit.textChanged.connect(self.search)
        self.edit.returnPressed.connect(self.go_to_first)
        QShortcut(QKeySequence(Qt.Key.Key_Escape), self.edit, self.edit.clear,
                  context=Qt.ShortcutContext.WidgetShortcut)
        self.shortcut = QShortcut(QKeySequence.StandardKey.Find, parent or self, self.focus,
                                  context=Qt.ShortcutContext.WidgetWithChildrenShortcut)

    def focus(self) -> None:
        """Put the keyboard in the search box (its text selected, to type a new search)."""
        self.edit.setFocus(Qt.FocusReason.ShortcutFocusReason)
        self.edit.selectAll()

    def search(self, text: str) -> None:
        """Filter the form by ``text`` and say how many fields match."""
        self.matches = self.form.set_filter(text)
        query = " ".join(text.split())
        if not query:
            self.status.hide()
            return
        if self.matches:
            noun = "field matches" if len(self.matches) == 1 else "fields match"
            self.status.setText(f"<span style='color:#57606a'>{len(self.matches)} {noun}; "
                                f"Enter goes to the first</span>")
        else:
            self.status.setText(f"<span style='color:#c62828'>no field matches "
                                f"'{html.escape(query)}'</span>")
        self.status.show()

    def go_to_first(self) -> None:
        """Give the first matching field the keyboard (nothing when none matches)."""
        if self.matches:
            self.activated.emit(self.matches[0])
