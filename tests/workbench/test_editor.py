"""The schema-generated experiment editor and the augmentation preview."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt

from backend.config import ExperimentConfig, iter_fields, load_config
from backend.methods.catalog import method_specs
from workbench import workers
from workbench.aug_preview import AugPreview
from workbench.config_model import ConfigModel, error_field, field_visible, schema_fields

from .conftest import quick_small


def test_form_is_generated_from_the_schema(editor):
    skipped = {"method.name", "runtime.device", "name", "data.source"}
    paths = {p for p, _, _ in iter_fields(ExperimentConfig())} - {p for p in schema_fields() if p.startswith("method.")}
    paths |= {f"method.{key}" for spec in method_specs().values() for key in spec.params}  # every method's
    assert set(editor.form.editors) == paths - skipped
    assert "data.source" in editor.form.custom_widgets
    lr = editor.form.editors["optim.lr"]
    assert "learning rate" in lr.input.toolTip().lower()
    assert lr.input.minimum() == 0.0  # gt=0 -> 0 can be typed and is reported, not silently refused
    hue = editor.form.editors["augment.hue"]
    assert hue.input.maximum() == 0.5
    assert editor.form.editors["model.backbone"].input.count() >= 3  # choices -> combo
    assert len(editor.form.editors["augment.crop_scale"].input.spins) == 2  # [min, max]


def test_method_specific_fields_follow_the_method(editor):
    queue = editor.form.editors["method.queue_size"]
    assert editor.model.method == "simclr"
    assert queue.isHidden()
    idx = editor.method_combo.findData("moco")
    assert idx >= 0, "moco must be in the method picker"
    editor.method_combo.setCurrentIndex(idx)
    assert editor.model.method == "moco"
    assert not queue.isHidden()
    assert not editor.form.editors["method.momentum"].isHidden()
    assert editor.form.editors["method.barlow_lambda"].isHidden()
    # only presets that train the chosen method are offered
    presets = [editor.preset_combo.itemData(i) for i in range(editor.preset_combo.count())]
    assert "moco" in presets and "simclr" not in presets


def test_changing_a_field_updates_the_model(editor):
    editor.form.editors["optim.lr"].input.setValue(0.25)
    assert editor.model.value("optim.lr") == pytest.approx(0.25)
    editor.form.editors["augment.hflip_prob"].input.setValue(0.0)
    editor.form.editors["runtime.compile"].input.setChecked(True)
    cfg = editor.model.config()
    assert cfg.optim.lr == pytest.approx(0.25) and cfg.augment.hflip_prob == 0.0 and cfg.runtime.compile
    assert editor.launch_button.isEnabled()


def test_invalid_lr_shows_inline_message_and_disables_launch(editor):
    lr = editor.form.editors["optim.lr"]
    lr.input.setValue(0.0)
    assert not lr.error_label.isHidden()
    assert "optim.lr must be > 0" in lr.error_label.text()
    assert not editor.launch_button.isEnabled()
    assert "optim.lr" in editor.problems.text()
    lr.input.setValue(0.1)
    assert lr.error_label.isHidden()
    assert editor.launch_button.isEnabled()


def test_batch_larger_than_data_is_reported_on_the_batch_field(editor):
    editor.form.editors["optim.batch_size"].input.setValue(1024)
    batch = editor.form.editors["optim.batch_size"]
    assert "synthetic_train_size" in batch.error_label.text()
    assert not editor.launch_button.isEnabled()


def test_launch_emits_the_validated_config(editor, qtbot):
    with qtbot.waitSignal(editor.launchRequested, timeout=2000) as blocker:
        qtbot.mouseClick(editor.launch_button, Qt.MouseButton.LeftButton)
    cfg, device = blocker.args
    assert isinstance(cfg, ExperimentConfig)
    assert cfg.schedule.epochs == 2 and cfg.runtime.device == device


def test_preset_fills_the_form(editor):
    editor.method_combo.setCurrentIndex(editor.method_combo.findData("moco"))
    idx = editor.preset_combo.findData("moco")
    editor.preset_combo.setCurrentIndex(idx)
    editor.preset_combo.activated.emit(idx)
    assert editor.model.value("method.queue_size") == 8192  # lightly batch-512 row (preset cites it)
    assert editor.form.editors["method.temperature"].input.value() == pytest.approx(0.1)
    assert editor.source_picker().kind.currentData() == "cifar10"


def test_source_picker_image_folder(editor, tmp_path):
    picker = editor.source_picker()
    picker.kind.setCurrentIndex(picker.kind.findData("imagefolder"))
    assert not picker.folder_row.isHidden()
    assert "data.source" in editor.model.field_errors  # no folder yet
    assert not editor.launch_button.isEnabled()
    from PIL import Image
    (tmp_path / "cats").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "cats" / "1.png")   # a folder the trainer can use
    picker.folder.setText(str(tmp_path))
    picker.folder.textEdited.emit(str(tmp_path))
    assert editor.model.value("data.source") == f"imagefolder:{tmp_path}"
    assert editor.launch_button.isEnabled()
    assert editor.form.editors["data.synthetic_train_size"].isHidden()
    assert not editor.form.editors["data.val_fraction"].isHidden()
    assert not editor.form.editors["data.classes_file"].isHidden()      # image folders only
    assert editor.form.editors["data.stl10_unlabeled"].isHidden()       # STL-10 only
    assert not editor.form.editors["data.memory"].isHidden()            # every source


def test_save_and_load_config_files(editor, tmp_path):
    editor.form.editors["optim.lr"].input.setValue(0.5)
    assert editor.save_file(tmp_path / "exp.toml")
    assert load_config(tmp_path / "exp.toml").optim.lr == pytest.approx(0.5)
    editor.form.editors["optim.lr"].input.setValue(0.1)
    assert editor.load_file(tmp_path / "exp.toml")
    assert editor.form.editors["optim.lr"].input.value() == pytest.approx(0.5)
    (tmp_path / "bad.toml").write_text("[optim]\nlr = 'fast'\n")
    assert not editor.load_file(tmp_path / "bad.toml")  # reported, not raised
    assert editor.model.value("optim.lr") == pytest.approx(0.5)


def test_error_sentences_map_to_fields():
    assert error_field("optim.lr must be > 0, got 0.0") == "optim.lr"
    assert error_field("something else entirely") is None
    data = ConfigModel().data()
    assert not field_visible("method.queue_size", data)
    data["method"]["name"] = "moco"
    assert field_visible("method.queue_size", data)
    data["optim"]["optimizer"] = "sgd"
    assert not field_visible("optim.adam_beta2", data) and field_visible("optim.momentum", data)
    data["optim"]["optimizer"] = "adamw"
    assert field_visible("optim.adam_beta1", data) and not field_visible("optim.momentum", data)


def test_aug_preview_draws_view_pairs(qtbot):
    workers.set_synchronous(True)
    model = ConfigModel(quick_small())
    preview = AugPreview(model)
    qtbot.addWidget(preview)
    preview.refresh()
    rows = preview.mosaic.rows
    assert [label for label, _ in rows] == ["original", "view 1", "view 2"]
    assert all(len(images) == 8 for _, images in rows)
    assert len(set(preview.mosaic.names)) == 8  # one image per class first
    # a change is debounced, then redrawn (here in a real worker thread)
    workers.set_synchronous(False)
    model.set_value("augment.num_local_crops", 2)
    assert preview.timer.isActive()
    qtbot.waitUntil(lambda: len(preview.mosaic.rows) == 5, timeout=15000)
    assert preview.mosaic.rows[-1][1][0].width() == model.value("augment.local_crop_size")


def test_aug_preview_reports_bad_data_without_raising(qtbot, tmp_path):
    workers.set_synchronous(True)
    model = ConfigModel(quick_small(data={"source": f"imagefolder:{tmp_path / 'missing'}"}))
    preview = AugPreview(model)
    qtbot.addWidget(preview)
    preview.refresh()
    # the folder check is part of validation: the preview says what to fix instead of failing
    assert "fix first" in preview.status.text() and "does not exist" in preview.status.text()
    bad = tmp_path / "bad" / "cats"
    bad.mkdir(parents=True)
    (bad / "1.png").write_bytes(b"not a png")                  # passes the check, fails to decode
    model.set_value("data.source", f"imagefolder:{bad.parent}")
    preview.refresh()
    assert "preview failed" in preview.status.text()


def test_a_run_config_loads_into_the_editor(editor, tmp_path):
    from backend.runs import create_run
    run_dir = create_run(tmp_path / "ws", ExperimentConfig.from_dict(quick_small(optim={"lr": 0.7})))
    assert editor.load_file(run_dir / "config.json")
    assert editor.model.value("optim.lr") == pytest.approx(0.7)
    assert editor.launch_button.isEnabled()


def test_workers_run_in_the_pool_and_report_on_the_gui_thread(qtbot):
    import threading

    from PySide6.QtWidgets import QWidget

    seen = {}

    def job(ctx, x):
        seen["thread"] = threading.current_thread()
        ctx.progress(0.5, "half")
        return x * 2

    progress = []
    task = workers.submit(job, 21, on_progress=lambda f, t: progress.append((f, t)))
    assert task.wait(10) and task.result == 42
    assert seen["thread"] is not threading.main_thread() and progress == [(0.5, "half")]
    failing = workers.submit(lambda ctx: 1 / 0)
    assert failing.wait(10) and failing.error.startswith("ZeroDivisionError")
    # a task whose owner is deleted is forgotten (no callback into a dead widget)
    owner = QWidget()
    gate = threading.Event()
    workers.submit(lambda ctx: gate.wait(5), owner=owner, on_result=lambda r: seen.setdefault("late", r))
    owner.deleteLater()
    qtbot.waitUntil(lambda: not workers._live, timeout=5000)
    gate.set()
    assert workers.wait_all(5) and "late" not in seen
    workers.set_synchronous(True)
    sync = workers.submit(job, 1)
    assert sync.done and sync.result == 2 and seen["thread"] is threading.main_thread()


def test_gradient_accumulation_shows_what_stays_per_micro_batch(editor):
    accum = editor.form.editors["optim.grad_accum_steps"]
    assert accum.note_label.isHidden()
    accum.input.setValue(4)
    assert not accum.note_label.isHidden()
    assert "4 micro-batches" in accum.note_label.text() and "negatives" in accum.note_label.text()
    assert editor.model.config().optim.grad_accum_steps == 4
    accum.input.setValue(1)
    assert accum.note_label.isHidden()


def test_fields_follow_the_selected_methods_declarations(editor):
    pick = lambda name: editor.method_combo.setCurrentIndex(editor.method_combo.findData(name))  # noqa: E731
    predictor = editor.form.editors["model.predictor_hidden_dim"]
    assert predictor.isHidden()  # simclr has no predictor (its spec does not read the field)
    pick("byol")
    assert not predictor.isHidden()
    queue = editor.form.editors["method.queue_size"]
    pick("moco")
    assert "negatives kept in the queue" in queue.input.toolTip()
    pick("swav")  # the same field, declared by SwAV with its own help
    assert "feature queue" in queue.input.toolTip() and "applies to: " in queue.input.toolTip()
    tip = editor.method_combo.itemData(editor.method_combo.findData("swav"), Qt.ItemDataRole.ToolTipRole)
    assert "clustering" in tip
