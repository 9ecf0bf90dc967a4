"""The Inspect window: embedding scatter (hover, neighbours, compare, projections, cancel),
attention maps (ViT heads, threshold mask, image files; CNN feature-norm note), kNN / linear
probe with the confusion matrix, augmentation pairs, the export dialog, and the main-window
wiring. Checkpoints are trained here, once per module, on tiny synthetic data."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from backend.runs import read_evaluations
from backend.train import run_training
from workbench import workers
from workbench.export_dialog import ExportDialog
from workbench.inspect_window import InspectWindow

from ..backend.trainer_helpers import make_run

CNN = {"data": {"synthetic_train_size": 128, "synthetic_test_size": 128},
       "schedule": {"epochs": 1, "warmup_epochs": 0}}
VIT = {"model": {"backbone": "vit_tiny", "projector_hidden_dim": 64, "projector_out_dim": 32},
       "method": {"name": "simclr"},
       "data": {"synthetic_train_size": 32, "synthetic_test_size": 16},
       "optim": {"batch_size": 16, "optimizer": "adamw", "lr": 1e-3, "weight_decay": 0.05},
       "schedule": {"epochs": 1, "warmup_epochs": 0, "max_steps": 1},
       "eval": {"probe_batch_size": 16, "knn_every_epochs": 0, "knn_k": 5}}


def _trained(tmp_path_factory, name, overrides):
    run = make_run(tmp_path_factory.mktemp(name), **overrides)
    assert run_training(run, echo=False) == 0, (run / "events.jsonl").read_text()[-2000:]
    return run


@pytest.fixture(scope="module")
def cnn_run(tmp_path_factory):
    return _trained(tmp_path_factory, "cnn", CNN)


@pytest.fixture(scope="module")
def vit_run(tmp_path_factory):
    return _trained(tmp_path_factory, "vit", VIT)


@pytest.fixture
def inspect(qtbot):
    """Open an InspectWindow on a run (workers inline); closed at the end."""
    workers.set_synchronous(True)

    def open_window(run_dir):
        win = InspectWindow(run_dir)
        qtbot.addWidget(win)
        win.resize(1200, 800)
        win.show()
        qtbot.waitExposed(win)
        return win
    return open_window


def isolated_point(xy: np.ndarray) -> int:
    """The point farthest from its nearest neighbour (so a hover at it finds it alone)."""
    d = np.linalg.norm(xy[:, None] - xy[None], axis=-1)
    np.fill_diagonal(d, np.inf)
    return int(np.argmax(d.min(axis=1)))


# ---- embeddings --------------------------------------------------------------------------------------
def test_embedding_hover_shows_image_label_and_click_shows_neighbours(inspect, cnn_run):
    win = inspect(cnn_run)
    view = win.embeddings
    view.projection.setCurrentIndex(view.projection.findData("pca"))
    view.limit.setValue(0)
    view.compute()
    state = view.state
    assert state is not None and len(state.colour_ids) == 128 and state.coloured_by == "class"
    panel = view.panels[0]
    assert panel.scatter.data.size == 128 and len(panel.xy) == 128
    assert "PCA" in panel.plot.titleLabel.text

    i = isolated_point(panel.xy)
    es = state.sets[0].es
    label = es.class_names[int(es.labels[i])]
    assert panel.hover_at_scene(panel.scene_pos_of(i)) == i
    assert view.card.index == i and label in view.card.label_text()
    assert view.card.image.pixmap().width() == view.card.SIDE
    far = panel.view_box.sceneBoundingRect().topLeft()
    assert panel.hover_at_scene(far) in (-1, i)  # empty corner (or the point, if it sits there)

    view.gallery.k.setValue(6)
    assert panel.click_at_scene(panel.scene_pos_of(i)) == i
    items = view.gallery.items
    assert len(items) == 6 and len(view.gallery.grid.tiles) == 6
    assert items[0][0] == i and items[0][2] == pytest.approx(1.0, abs=1e-4)
    assert [s for _, _, s in items] == sorted((s for _, _, s in items), reverse=True)
    assert view.gallery.grid.captions()[0].endswith("query")
    assert len(panel.query_mark.data) == 1 and len(panel.neighbour_marks.data) == 5


def test_compare_mode_and_second_projection(inspect, cnn_run, monkeypatch):
    import backend.inspect

    real = backend.inspect.embedding_projection
    calls = []

    def fake(es, method="pca", seed=0, **kwargs):  # t-SNE itself is too slow for a GUI test
        if method == "pca":
            return real(es, method, seed, **kwargs)
        calls.append(method)
        return np.ascontiguousarray(es.features[:, :2] * 10.0, dtype=np.float32)

    monkeypatch.setattr(backend.inspect, "embedding_projection", fake)
    win = inspect(cnn_run)
    view = win.embeddings
    view.projection.setCurrentIndex(view.projection.findData("pca"))
    view.limit.setValue(64)
    view.compare.setChecked(True)
    view.compute()
    assert len(view.state.sets) == 2 and view.panels[1].isVisible()
    assert len(view.panels[0].xy) == len(view.panels[1].xy) == 64
    view.projection.setCurrentIndex(view.projection.findData("tsne"))
    assert calls == ["tsne", "tsne"] and "t-SNE" in view.panels[1].plot.titleLabel.text
    assert np.allclose(view.panels[0].xy, view.state.sets[0].es.features[:, :2] * 10.0)
    colours = {b.color().name() for b in view.panels[0].scatter.data["brush"]}
    assert len(colours) == len(set(view.state.colour_ids.tolist())) > 1  # still coloured by class
    view.projection.setCurrentIndex(view.projection.findData("pca"))
    view.projection.setCurrentIndex(view.projection.findData("tsne"))
    assert calls == ["tsne", "tsne"]  # kept: switching back is instant
    view.panels[1].click_at_scene(view.panels[1].scene_pos_of(3))
    assert view.gallery.items[0][0] == 3 and len(view.panels[0].query_mark.data) == 1


def test_unlabelled_data_is_coloured_by_kmeans_clusters(inspect, cnn_run, monkeypatch):
    import backend.inspect

    real = backend.inspect.compute_embeddings

    def unlabelled(*args, **kwargs):
        es = real(*args, **kwargs)
        es.labels = None
        return es

    monkeypatch.setattr(backend.inspect, "compute_embeddings", unlabelled)
    win = inspect(cnn_run)
    view = win.embeddings
    view.projection.setCurrentIndex(view.projection.findData("pca"))
    view.limit.setValue(64)
    view.compute()
    assert view.state.coloured_by == "cluster" and view.state.colour_names[0] == "cluster 0"
    assert "k-means" in view.legend.text()
    view.panels[0].hover_at_scene(view.panels[0].scene_pos_of(isolated_point(view.panels[0].xy)))
    assert "cluster" in view.card.label_text()


def test_cancel_drops_the_result(inspect, cnn_run, qtbot):
    win = inspect(cnn_run)
    workers.set_synchronous(False)
    view = win.embeddings
    view.projection.setCurrentIndex(view.projection.findData("pca"))
    view.compute()
    assert view.taskbar.busy and view.taskbar.cancel_button.isVisible()
    view.taskbar.cancel_button.click()
    assert workers.wait_all(30)
    assert view.state is None and view.taskbar.text() == "cancelled"
    assert not view.taskbar.bar.isVisible()


# ---- attention ---------------------------------------------------------------------------------------
def test_vit_attention_heads_and_mass_slider(inspect, vit_run, tmp_path):
    win = inspect(vit_run)
    view = win.attention
    view.show_index(2)
    r = view.result
    assert r is not None and r.kind == "attention" and r.num_heads == 3
    captions = view.grid.captions()
    assert {"mean of heads", "head 0", "head 1", "head 2"} <= set(captions)
    assert len(captions) == 2 * (r.num_heads + 2)  # maps row and masks row
    assert "60 %" in view.mass_label.text()
    at60 = view.coverage
    view.mass.setValue(20)
    at20 = view.coverage
    view.mass.setValue(100)
    assert 0 < at20 < at60 < view.coverage <= 1.0
    assert "20 %" not in view.coverage_label.text() and "100 %" in view.coverage_label.text()

    path = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 56, 3), dtype=np.uint8)).save(path)
    view.open_image(path)
    assert view.source == "photo.png" and view.grid.captions()[0] == "photo.png"
    assert view.result.images.shape[-1] == 32


def test_cnn_shows_feature_norm_note(inspect, cnn_run):
    win = inspect(cnn_run)
    view = win.attention
    view.next_button.click()
    assert view.result.kind == "feature_norm"
    assert "need a ViT" in view.note.text() and "feature map" in view.note.text()
    assert "feature norm" in view.grid.captions()


# ---- evaluation -----------------------------------------------------------------------------------------
def test_knn_and_linear_probe_fill_table_and_confusion(inspect, cnn_run, qtbot):
    win = inspect(cnn_run)
    view = win.evaluation
    rows = view.table.rowCount()
    view.k.setValue(10)
    view.knn_button.click()
    assert view.table.rowCount() == rows + 1
    result = view.results[-1]
    assert view.table.item(rows, 1).text() == "kNN"
    assert view.table.item(rows, 5).text() == f"{100 * result['top1']:.1f} %"
    classes = len(result["class_names"])
    assert classes == 10 and view.confusion.matrix.shape == (classes, classes)
    assert view.confusion.matrix.sum() == 128
    assert view.confusion.image.image.shape == (classes, classes)
    assert read_evaluations(cnn_run)[-1]["kind"] == "knn"

    view.epochs.setValue(10)
    view.probe_button.click()
    assert view.table.item(rows + 1, 1).text() == "Linear probe"
    assert view.table.item(rows + 1, 6).text().endswith("%")
    assert view.confusion.matrix.shape == (classes, classes)
    assert read_evaluations(cnn_run)[-1]["kind"] == "linear_probe"

    view.ft_epochs.setValue(1)
    view.finetune_button.click()  # a fine-tune run, trained by a trainer process
    assert view.finetune_running()
    qtbot.waitUntil(lambda: not view.finetune_running() and view.table.rowCount() > rows + 2, timeout=180_000)
    assert view.table.item(rows + 2, 1).text() == "Fine-tune"
    assert "1 ep" in view.table.item(rows + 2, 4).text()
    assert view.confusion.matrix.sum() == 128
    assert read_evaluations(cnn_run)[-1]["kind"] == "finetune"
    assert "Fine-tune top-1" in view.taskbar.text()


def test_fine_tune_cancel_stops_its_trainer_and_records_nothing(inspect, cnn_run, qtbot):
    win = inspect(cnn_run)
    view = win.evaluation
    before = read_evaluations(cnn_run)
    view.ft_epochs.setValue(200)
    view.finetune_button.click()
    qtbot.waitUntil(lambda: view.ft_controller.state.step >= 1, timeout=120_000)
    assert view.taskbar.cancel_button.isVisibleTo(view) and "fine-tuning" in view.taskbar.text()
    view.taskbar.cancel_button.click()
    qtbot.waitUntil(lambda: not view.finetune_running(), timeout=120_000)
    assert view.ft_controller.state.state == "stopped" and "stopped" in view.taskbar.text()
    assert read_evaluations(cnn_run) == before


def test_augmentation_pairs(inspect, cnn_run):
    win = inspect(cnn_run)
    win.tabs.setCurrentWidget(win.pairs)  # first show draws
    view = win.pairs
    assert len(view.grid.tiles) == view.count.value() * 3  # original + two views
    view.count.setValue(2)
    view.sample_button.click()
    assert len(view.grid.tiles) == 6 and len(view.grid.row_labels) == 2


def test_damaged_checkpoint_is_one_red_sentence_in_each_view(inspect, workspace):
    from .conftest import write_fake_run

    run = write_fake_run(workspace)  # checkpoints/last.pt holds junk bytes
    win = inspect(run)
    win.embeddings.compute()
    win.attention.show_index(0)
    win.evaluation.knn_button.click()
    for view in (win.embeddings, win.attention, win.evaluation):
        text = view.taskbar.text()
        assert "last.pt" in text and "Traceback" not in text and "\n" not in text, text
        assert "c62828" in view.taskbar.label.styleSheet()
    assert win.embeddings.state is None and win.attention.result is None


# ---- export ---------------------------------------------------------------------------------------------
def test_export_dialog_writes_and_lists_files(qtbot, cnn_run, tmp_path):
    from backend.export import onnx_unavailable_reason

    workers.set_synchronous(True)
    dialog = ExportDialog(cnn_run)
    qtbot.addWidget(dialog)
    dialog.show()
    onnx = dialog.format_boxes["onnx"]
    assert onnx.isEnabled() == (onnx_unavailable_reason() is None)
    if not onnx.isEnabled():
        assert onnx.toolTip() == onnx_unavailable_reason()
    out = tmp_path / "exported"
    dialog.out_edit.setText(str(out))
    dialog.export_button.click()
    names = {p.name for p in dialog.written}
    assert {"encoder.safetensors", "encoder.torchscript.pt", "model_card.json", "README.md"} <= names
    assert all(p.parent == out and p.exists() for p in dialog.written)
    assert dialog.files.count() == len(dialog.written)
    assert "tiny_cnn" in dialog.summary.toPlainText() and "verified" in dialog.summary.toPlainText()
    assert dialog.export_button.isEnabled()

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    dialog.out_edit.setText(str(blocker))
    dialog.format_boxes["torchscript"].setChecked(False)
    dialog.export_button.click()
    assert dialog.files.count() == 0 and dialog.taskbar.text()
    assert "Traceback" not in dialog.taskbar.text() and "c62828" in dialog.taskbar.label.styleSheet()


# ---- main window -------------------------------------------------------------------------------------------
def test_main_window_opens_inspect_and_export(window, cnn_run):
    workers.set_synchronous(True)
    assert [a.text() for a in window.menuBar().actions()].count("&Inspect") == 1
    window.browser.inspectRequested.emit(cnn_run)
    inspect_window = window.inspect_windows.get(str(cnn_run.resolve())) or next(iter(window.inspect_windows.values()))
    assert isinstance(inspect_window, InspectWindow) and inspect_window.run_dir == cnn_run
    assert window.inspect_run(cnn_run) is inspect_window and len(window.inspect_windows) == 1
    dialog = window.export_encoder(cnn_run)
    assert isinstance(dialog, ExportDialog) and dialog.run_dir == cnn_run
    dialog.close()
    inspect_window.close()


# ---- fast / reproducible UMAP, rich-text labels, empty confusion matrix ------------------------------------
def shown_text(label) -> str:
    """What a QLabel actually displays: its text, or the text its HTML renders to when Qt treats it
    as rich text (where a "<" can swallow the rest)."""
    from PySide6 import QtGui
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QTextDocument

    fmt, text = label.textFormat(), label.text()
    rich = fmt == Qt.TextFormat.RichText or (fmt == Qt.TextFormat.AutoText and QtGui.Qt.mightBeRichText(text))
    if not rich:
        return text
    doc = QTextDocument()
    doc.setHtml(text)
    return doc.toPlainText()


def test_umap_draft_then_refined_with_real_progress_and_reproducible_choice(inspect, cnn_run):
    from backend.inspect import projection_key

    win = inspect(cnn_run)
    workers.set_synchronous(False)
    view = win.embeddings
    view.projection.setCurrentIndex(view.projection.findData("pca"))
    view.limit.setValue(0)
    view.compute()
    assert workers.wait_all(60) and view.state is not None
    titles, values = [], []
    panel = view.panels[0]
    real = panel.set_positions
    panel.set_positions = lambda xy, title: (titles.append(title), real(xy, title))
    view.taskbar.bar.valueChanged.connect(values.append)
    view.projection.setCurrentIndex(view.projection.findData("umap"))
    assert workers.wait_all(240)
    assert any("draft" in t for t in titles) and "UMAP" in titles[-1] and "draft" not in titles[-1]
    assert any(0 < v < 1000 for v in values) and len(set(values)) > 3   # the bar moves with the epochs
    points = view.state.sets[0]
    fast = points.projections[projection_key("umap")]
    assert fast.shape == (128, 2) and np.array_equal(panel.xy, fast)

    titles.clear()
    view.reproducible.setChecked(True)   # recomputes with the seeded layout, cached apart
    assert workers.wait_all(240)
    exact = points.projections[projection_key("umap", reproducible=True)]
    assert "reproducible" in titles[-1] and np.array_equal(panel.xy, exact)
    assert not any("draft" in t for t in titles)
    view.reproducible.setChecked(False)  # back to the fast layout: instant, from memory
    assert np.array_equal(panel.xy, fast) and not view.taskbar.busy


def test_task_messages_with_angle_brackets_are_shown_whole(inspect, cnn_run):
    win = inspect(cnn_run)
    text = "config value '<b>' refused: expected <i>an int</i> < 5"
    win.embeddings.taskbar.show_error(text)
    assert shown_text(win.embeddings.taskbar.label) == text
    win.embeddings.taskbar.show_text(text)
    assert shown_text(win.embeddings.taskbar.label) == text


def test_run_name_with_angle_bracket_is_shown_whole(inspect, cnn_run, tmp_path):
    import shutil

    from PySide6.QtWidgets import QLabel
    run = tmp_path / "run<b>a<c"
    shutil.copytree(cnn_run, run)
    win = inspect(run)
    assert any(shown_text(label) == "run<b>a<c" for label in win.findChildren(QLabel))


def test_export_dialog_reason_with_angle_brackets_is_shown_whole(qtbot, cnn_run, monkeypatch):
    from PySide6.QtWidgets import QLabel
    reason = "the <b>onnxruntime</b> package is not installed (pip install onnx onnxruntime)"
    monkeypatch.setattr("backend.export.onnx_unavailable_reason", lambda: reason)
    dialog = ExportDialog(cnn_run)
    qtbot.addWidget(dialog)
    assert not dialog.format_boxes["onnx"].isEnabled()
    assert any(shown_text(label) == reason for label in dialog.findChildren(QLabel))
    assert "pt2" in dialog.format_boxes and "recommended" in dialog.format_boxes["pt2"].text()


def test_empty_confusion_matrix_shows_a_note_not_axes(inspect, cnn_run):
    win = inspect(cnn_run)
    win.tabs.setCurrentWidget(win.evaluation)
    confusion = win.evaluation.confusion
    assert not confusion.plot_widget.isVisible() and confusion.empty_note.isVisible()
    assert "no evaluation yet" in confusion.empty_note.text().lower()
    confusion.set_matrix(np.array([[3, 1], [0, 4]]), ["cat", "dog"], "kNN")
    assert confusion.plot_widget.isVisible() and not confusion.empty_note.isVisible()
