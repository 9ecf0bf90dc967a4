"""Finding a field in the experiment form: rows and sections filtered by key and label, tabs
narrowed with their match counts, the no-match sentence, Enter and Ctrl+F, and an exact restore."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication

from workbench.field_search import field_matches


@pytest.fixture
def editor(editor, qtbot):
    """The shared editor (conftest), tall enough for a search to show several sections."""
    editor.resize(460, 900)
    qtbot.waitExposed(editor)
    return editor


def shown(editor, path: str) -> bool:
    """Whether the field's row is shown (its section shown and unfolded, the row visible)."""
    form = editor.form
    widget = form.editors.get(path) or form.custom_widgets[path]
    return widget.isVisibleTo(form) or (form.augment_tabs is not None and _on_hidden_tab(form, widget))


def _on_hidden_tab(form, widget) -> bool:
    """A field on a tab that is not the current one is not visible, yet shown on its tab."""
    for name in form.tab_titles:
        section = form.sections[name]
        if section.isAncestorOf(widget) and section is not form.augment_tabs.currentWidget():
            index = form.augment_tabs.indexOf(section)
            row = section.form.getWidgetPosition(widget)[0]
            return form.augment_tabs.isTabVisible(index) and section.form.isRowVisible(row)
    return False


def look(editor) -> dict:
    """Everything a search changes, to compare the form before it and after clearing it."""
    form, tabs = editor.form, editor.form.augment_tabs
    rows = {path: shown(editor, path) for path in [*form.editors, *form.custom_widgets]}
    sections = {name: (s.isVisibleTo(form), s.header.isChecked(), s.body.isVisibleTo(s))
                for name, s in form.sections.items()}
    tab_state = [(tabs.tabText(i), tabs.isTabVisible(i)) for i in range(tabs.count())]
    return {"rows": rows, "sections": sections, "tabs": tab_state, "current": tabs.currentIndex(),
            "tabs_shown": tabs.isVisibleTo(form), "status": editor.search.status.isVisibleTo(editor)}


def type_search(qtbot, editor, text: str) -> None:
    editor.search.edit.clear()
    qtbot.keyClicks(editor.search.edit, text)


def test_the_match_rule_reads_keys_and_labels():
    assert field_matches("temp", "method.temperature", "Temperature")
    assert field_matches("LR", "optim.lr", "LR")
    assert field_matches("warmup epochs", "schedule.warmup_epochs", "Warmup epochs")  # words, underscores
    assert field_matches("schedule warm", "schedule.warmup_epochs", "Warmup epochs")  # section + word
    assert not field_matches("warmup lr", "schedule.warmup_epochs", "Warmup epochs")
    assert field_matches("knn k", "eval.knn_k", "kNN k")


def test_typing_shows_only_matching_fields_and_hides_empty_sections(editor, qtbot):
    type_search(qtbot, editor, "temp")
    assert shown(editor, "method.temperature")
    assert not shown(editor, "optim.lr") and not shown(editor, "model.backbone")
    assert not editor.form.sections["optim"].isVisibleTo(editor.form)
    assert not editor.form.sections["model"].isVisibleTo(editor.form)
    assert editor.form.sections["method"].isVisibleTo(editor.form)
    assert not editor.form.augment_tabs.isVisibleTo(editor.form)   # no augmentation field matches
    assert "method.temperature" in editor.search.matches
    assert all("temp" in p for p in editor.search.matches)
    assert f"{len(editor.search.matches)} fields match" in editor.search.status.text()

    type_search(qtbot, editor, "lr")
    assert shown(editor, "optim.lr") and not shown(editor, "method.temperature")
    assert editor.search.matches[0] == "optim.lr"
    assert all("lr" in p or "LR" in editor.form.labels[p].text() for p in editor.search.matches)
    optim_matches = [p for p in editor.search.matches if p.startswith("optim.")]
    assert len(optim_matches) >= 2   # optim.lr and optim's other lr fields
    assert not shown(editor, "optim.batch_size")


def test_a_folded_section_unfolds_for_its_matches_and_folds_again(editor, qtbot):
    eval_section = editor.form.sections["eval"]
    assert not eval_section.body.isVisibleTo(eval_section)   # folded by default
    type_search(qtbot, editor, "knn_k")
    assert eval_section.body.isVisibleTo(eval_section) and shown(editor, "eval.knn_k")
    editor.search.edit.clear()
    assert not eval_section.body.isVisibleTo(eval_section) and not eval_section.header.isChecked()


def test_tabs_show_their_match_counts_and_the_first_tab_with_a_match_is_selected(editor, qtbot):
    tabs = editor.form.augment_tabs
    assert tabs.currentIndex() == 0   # Shared
    full = tabs.sizeHint().height()
    type_search(qtbot, editor, "threshold")
    assert tabs.sizeHint().height() < full / 2   # as tall as its short pages, not its full ones
    view1, view2 = (tabs.indexOf(editor.form.sections[n]) for n in ("augment.view1", "augment.view2"))
    assert not any(p.startswith("augment.") and p.count(".") == 1 for p in editor.search.matches)
    assert not tabs.isTabVisible(0)   # Shared has no threshold field: its tab is hidden
    assert tabs.currentIndex() == view1
    assert tabs.tabText(view1).startswith("View 1 (") and tabs.tabText(view2).startswith("View 2 (")
    count1 = sum(p.startswith("augment.view1.") for p in editor.search.matches)
    assert tabs.tabText(view1) == f"View 1 ({count1})" and count1 >= 1
    assert shown(editor, "augment.view1.solarize_threshold") and not shown(editor, "augment.view1.solarize_prob")


def test_no_match_says_so_and_hides_the_whole_form(editor, qtbot):
    type_search(qtbot, editor, "xyz")
    assert editor.search.matches == []
    assert editor.search.status.isVisibleTo(editor)
    assert "no field matches 'xyz'" in editor.search.status.text()
    assert not any(s.isVisibleTo(editor.form) for s in editor.form.sections.values())
    type_search(qtbot, editor, "<b>")
    assert "&lt;b&gt;" in editor.search.status.text()   # the query is shown as text, not markup


def test_clearing_the_search_restores_the_form_exactly(editor, qtbot):
    editor.form.sections["model"].set_expanded(False)   # a section the user folded
    editor.form.augment_tabs.setCurrentIndex(2)          # and the tab they were on
    before = look(editor)
    for text in ("temp", "threshold", "xyz", "lr"):
        type_search(qtbot, editor, text)
        assert look(editor) != before
    editor.search.edit.clear()
    assert look(editor) == before
    every = [*editor.form.editors, *editor.form.custom_widgets]
    assert set(editor.form.matching_paths()) == {p for p in every if editor.model.visible(p)}


def test_esc_clears_the_search(editor, qtbot):
    before = look(editor)
    type_search(qtbot, editor, "temp")
    qtbot.keyClick(editor.search.edit, Qt.Key.Key_Escape)
    assert editor.search.edit.text() == "" and look(editor) == before


def test_the_search_follows_the_method(editor, qtbot):
    type_search(qtbot, editor, "queue")
    assert "method.queue_size" not in editor.search.matches   # SimCLR has no queue
    editor.model.set_value("method.name", "moco")
    assert shown(editor, "method.queue_size")
    assert not shown(editor, "optim.lr")                      # the search still applies


def test_enter_goes_to_the_first_match_and_ctrl_f_comes_back(editor, qtbot):
    editor.activateWindow()
    type_search(qtbot, editor, "temp")
    qtbot.keyClick(editor.search.edit, Qt.Key.Key_Return)
    first = editor.form.editors[editor.search.matches[0]].input
    qtbot.waitUntil(lambda: QApplication.focusWidget() is first, timeout=2000)
    qtbot.keyClick(first, Qt.Key.Key_F, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: editor.search.edit.hasFocus(), timeout=2000)
    assert editor.search.edit.selectedText() == "temp"   # typing replaces the old search


def test_a_problem_link_to_a_field_the_search_hides_clears_the_search(editor, qtbot):
    editor.model.set_value("optim.lr", 0.0)            # a problem on optim.lr, linked under the form
    assert "href='optim.lr'" in editor.problems.text()
    type_search(qtbot, editor, "temp")
    assert not shown(editor, "optim.lr")
    editor.problems.linkActivated.emit("optim.lr")
    assert editor.search.edit.text() == "" and shown(editor, "optim.lr")
    type_search(qtbot, editor, "lr")
    editor.problems.linkActivated.emit("optim.lr")     # shown by the search: the search stays
    assert editor.search.edit.text() == "lr"
