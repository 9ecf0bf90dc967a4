"""An editing session in the experiment editor: what the user sees while fixing fields, picking a
folder and choosing a method (escaped messages, a preview that follows the fixes, the folder check
in the Launch validity, range notes, the grouped method picker and its card)."""

from __future__ import annotations

import pytest
from PIL import Image
from PySide6.QtCore import Qt
from PySide6.QtGui import QTextDocument

from backend.methods.catalog import method_specs
from backend.methods.spec import FAMILIES
from workbench import workers
from workbench.aug_preview import SAMPLE_PER_SHOWN, AugPreview
from workbench.config_model import ConfigModel
from workbench.method_picker import HEADER_ROLE

from .conftest import quick_small


def shown_text(label) -> str:
    """What a QLabel displays: its text, rendered as HTML when the label treats it as rich text."""
    text = label.text()
    fmt = label.textFormat()
    if fmt == Qt.TextFormat.PlainText or (fmt == Qt.TextFormat.AutoText and not Qt.mightBeRichText(text)):
        return text
    doc = QTextDocument()
    doc.setHtml(text)
    return doc.toPlainText()


def make_folder(root, classes=("cats", "dogs"), per_class=3, size=(12, 12)):
    """A small image folder: ``per_class`` PNGs in each class folder."""
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.new("RGB", size, (40 * c, 10 * i, 90)).save(root / name / f"{i}.png")
    return root


@pytest.fixture
def preview(qtbot):
    workers.set_synchronous(True)
    model = ConfigModel(quick_small())
    view = AugPreview(model)
    qtbot.addWidget(view)
    view.refresh()
    return view


# ---- 1. error text with '<' is shown whole --------------------------------------------------
def test_preview_error_with_a_less_than_sign_is_shown_whole(preview):
    preview.model.set_value("augment.crop_scale", [0.5, 0.1])
    preview.refresh()
    text = shown_text(preview.status)
    assert text.startswith("fix first: augment.crop_scale")
    (sentence,) = preview.model.field_errors["augment.crop_scale"]
    assert "<" in sentence and sentence in text          # not cut at '<'


def test_field_and_folder_errors_are_plain_text(editor, tmp_path):
    lr = editor.form.editors["optim.lr"]
    lr.set_errors(["optim.lr must be <b>small</b> & > 0"])
    assert shown_text(lr.error_label) == "optim.lr must be <b>small</b> & > 0"
    picker = editor.source_picker()
    picker.show_problem("folder <tmp> & co is missing")
    assert "folder <tmp> & co is missing" in shown_text(picker.error_label)
    editor.form.editors["optim.lr"].input.setValue(0.0)       # a real sentence in the summary
    assert "optim.lr must be > 0" in shown_text(editor.problems)


# ---- 2. the preview follows the fix ---------------------------------------------------------
def test_preview_redraws_when_a_field_is_fixed_back(editor, qtbot):
    preview = AugPreview(editor.model)
    qtbot.addWidget(preview)
    preview.refresh()
    assert "fix first" not in shown_text(preview.status) and preview.mosaic.rows
    high = editor.form.editors["augment.crop_scale"].input.spins[1]
    low = editor.form.editors["augment.crop_scale"].input.spins[0]
    low.setValue(0.2)
    preview.refresh()
    high.setValue(0.1)
    preview.refresh()
    assert "fix first" in shown_text(preview.status)
    high.setValue(1.0)
    assert editor.model.is_valid
    qtbot.waitUntil(lambda: "fix first" not in shown_text(preview.status), timeout=3000)
    assert "views per image" in shown_text(preview.status)


# ---- 5. the preview decodes only what it shows ------------------------------------------------
def test_preview_of_a_folder_decodes_only_a_sample(tmp_path, qtbot, monkeypatch):
    import backend.data.imagefolder as imagefolder
    root = make_folder(tmp_path / "big", classes=[f"c{i}" for i in range(5)], per_class=40)
    real, calls = imagefolder.decode_image, []

    def decode(path, size, *, max_pixels=None):
        calls.append(path)
        return real(path, size, max_pixels=max_pixels)

    monkeypatch.setattr(imagefolder, "decode_image", decode)
    workers.set_synchronous(True)
    model = ConfigModel(quick_small(data={"source": f"imagefolder:{root}", "train_limit": 0}))
    preview = AugPreview(model)
    qtbot.addWidget(preview)
    preview.count.setValue(6)
    preview.refresh()
    assert len(preview.mosaic.rows[0][1]) == 6
    assert len(set(preview.mosaic.names)) == 5                 # every class shown
    assert 6 <= len(calls) <= SAMPLE_PER_SHOWN * 6 < 200       # not the whole split
    assert "sampled" in shown_text(preview.status)


# ---- 6. grouped method picker and method card -------------------------------------------------
def test_method_picker_groups_by_family_and_skips_headers(editor, qtbot):
    combo = editor.method_combo
    headers = [combo.itemText(i) for i in range(combo.count()) if combo.itemData(i, HEADER_ROLE)]
    families = {spec.family for spec in method_specs().values()}
    assert [h.lower() for h in headers] == [f for f in FAMILIES if f in families]
    current = None
    for i in range(combo.count()):                # every method sits under its family's header
        if combo.itemData(i, HEADER_ROLE):
            current = combo.itemText(i).lower()
            assert not combo.model().item(i).isEnabled()
        else:
            assert method_specs()[combo.itemData(i)].family == current
    # Down from the last contrastive method jumps over the "Distillation" header
    rows = [i for i in range(combo.count()) if combo.itemData(i) is not None]
    last_contrastive = max(i for i in rows if method_specs()[combo.itemData(i)].family == "contrastive")
    combo.setCurrentIndex(last_contrastive)
    combo.setFocus()
    qtbot.keyClick(combo, Qt.Key.Key_Down)
    assert combo.currentIndex() == last_contrastive + 2
    assert editor.model.method == combo.itemData(last_contrastive + 2)
    assert method_specs()[editor.model.method].family == "distillation"


def test_method_card_shows_help_paper_and_hyperparameters(editor):
    editor.method_combo.setCurrentIndex(editor.method_combo.findData("moco"))
    card = shown_text(editor.method_card.text)
    spec = method_specs()["moco"]
    assert spec.help in card and spec.paper in card and "contrastive" in card
    assert "queue_size = 4096" in card and "temperature = " in card
    editor.method_combo.setCurrentIndex(editor.method_combo.findData("simclr"))
    card = shown_text(editor.method_card.text)
    assert "A Simple Framework for Contrastive Learning of Visual Representations" in card
    editor.model.set_data(quick_small(method={"name": "byol"}))   # a file or preset moves it too
    assert "Grill et al. 2020" in shown_text(editor.method_card.text)


def test_every_method_declares_its_paper():
    missing = [name for name, spec in method_specs().items() if not spec.paper.strip()]
    assert missing == []


# ---- 3. the folder check is part of the validity Launch follows ------------------------------
def test_missing_folder_is_not_valid_and_a_fixed_one_is_after_rescan(editor, tmp_path, qtbot):
    picker = editor.source_picker()
    preview = AugPreview(editor.model)
    qtbot.addWidget(preview)
    folder = tmp_path / "photos"
    picker.set_folder(folder)                                 # mistyped / not there yet
    preview.refresh()
    assert "fix first" in shown_text(preview.status) and "does not exist" in shown_text(preview.status)
    assert editor.model.field_errors.get("data.source")
    assert not editor.model.is_valid and not editor.launch_button.isEnabled()
    assert "config is valid" not in shown_text(editor.problems)
    assert "does not exist" in shown_text(editor.problems)
    assert "does not exist" in shown_text(picker.error_label)
    make_folder(folder)
    assert not editor.launch_button.isEnabled()               # nothing re-checked it yet
    picker.scan_button.click()                                # Rescan
    assert editor.model.is_valid and editor.launch_button.isEnabled()
    assert "config is valid" in shown_text(editor.problems)
    assert picker.error_label.isHidden()
    qtbot.waitUntil(lambda: "views per image" in shown_text(preview.status), timeout=5000)


def test_folder_check_runs_off_the_gui_thread_and_launch_waits_for_it(editor, tmp_path, qtbot,
                                                                      monkeypatch):
    import threading

    import workbench.config_model as config_model
    threads, real = [], config_model.check_source
    monkeypatch.setattr(config_model, "check_source",
                        lambda spec: threads.append(threading.get_ident()) or real(spec))
    workers.set_synchronous(False)
    editor.model.set_value("data.source", f"imagefolder:{tmp_path / 'nowhere'}")
    assert editor.model.pending and not editor.launch_button.isEnabled()
    assert "checking" in shown_text(editor.problems)
    qtbot.waitUntil(lambda: not editor.model.pending, timeout=10000)
    assert threads and threading.get_ident() not in threads
    assert "does not exist" in shown_text(editor.problems) and not editor.launch_button.isEnabled()
    good = make_folder(tmp_path / "good")
    editor.model.set_value("data.source", f"imagefolder:{good}")
    qtbot.waitUntil(lambda: editor.launch_button.isEnabled(), timeout=10000)
    assert "config is valid" in shown_text(editor.problems)


# ---- 5. no schema error before a folder is chosen --------------------------------------------
def test_image_folder_without_a_path_prompts_for_one(editor):
    picker = editor.source_picker()
    picker.kind.setCurrentIndex(picker.kind.findData("imagefolder"))
    shown = shown_text(picker.error_label)
    assert shown.startswith("Choose the image folder") and "must be one of" not in shown
    assert "must be one of" not in shown_text(editor.problems)
    assert "choose the image folder" in shown_text(editor.problems)
    assert not editor.launch_button.isEnabled()
    picker.kind.setCurrentIndex(picker.kind.findData("synthetic"))
    assert editor.launch_button.isEnabled() and picker.error_label.isHidden()
    editor.model.set_value("data.source", "imagefolder")     # a typed spec still gets the real rule
    assert "must be one of" in editor.model.field_errors["data.source"][0]


# ---- 4. rejected input says what the field accepts -------------------------------------------
def type_into(qtbot, box, text):
    """Select the box's text and type ``text`` as a user would."""
    box.setFocus()
    box.lineEdit().selectAll()
    qtbot.keyClicks(box.lineEdit(), text)


def test_out_of_range_and_non_numeric_input_get_an_inline_note(editor, qtbot):
    lr = editor.form.editors["optim.lr"]
    before = editor.model.value("optim.lr")
    type_into(qtbot, lr.input, "-1")
    assert not lr.input_note.isHidden()
    assert lr.input_note.text() == "must be > 0 (got -1)"
    editor.form.editors["optim.batch_size"].input.setFocus()   # focus out: Qt puts the old value back
    assert editor.model.value("optim.lr") == pytest.approx(before)
    assert lr.input_note.text() == "must be > 0 (got -1)" and not lr.input_note.isHidden()
    type_into(qtbot, lr.input, "0.3")                            # good text clears it
    assert lr.input_note.isHidden() and editor.model.value("optim.lr") == pytest.approx(0.3)
    type_into(qtbot, lr.input, "0.3x")                           # the 'x' is refused: said why
    assert lr.input_note.text() == "must be a number > 0 (got '0.3x')"
    hue = editor.form.editors["augment.hue"]
    type_into(qtbot, hue.input, "0.9")
    assert hue.input_note.text() == "must be ≥ 0, ≤ 0.5 (got 0.9)"
    batch = editor.form.editors["optim.batch_size"]
    type_into(qtbot, batch.input, "0")
    assert batch.input_note.text().startswith("must be ") and "(got 0)" in batch.input_note.text()
    type_into(qtbot, batch.input, "a")
    assert "whole number" in batch.input_note.text()
