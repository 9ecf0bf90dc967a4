"""The editor's per-view augmentation tabs and the preview's per-view rendering."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backend.config import ExperimentConfig
from backend.data.augment import ViewGenerator
from workbench.aug_preview import _dataset, pick_indices, render_views

from .conftest import quick_small


def test_augment_has_a_tab_per_view(editor):
    tabs = editor.form.augment_tabs
    assert [tabs.tabText(i) for i in range(tabs.count())] == ["Shared", "View 1", "View 2", "Local views"]
    for table in ("view1", "view2", "local"):
        assert f"augment.{table}.solarize_prob" in editor.form.editors


def test_override_box_sets_and_clears_a_view_value(editor):
    field = editor.form.editors["augment.view2.solarize_prob"]
    assert field.value() is None and not field.input.isEnabled()
    assert field.input.value() == pytest.approx(editor.model.value("augment.solarize_prob"))  # shared shown
    field.override.setChecked(True)
    field.input.setValue(0.2)
    assert editor.model.value("augment.view2.solarize_prob") == pytest.approx(0.2)
    assert editor.model.config().augment.view2.solarize_prob == pytest.approx(0.2)
    assert editor.model.config().augment.view1.solarize_prob is None
    field.override.setChecked(False)
    assert editor.model.value("augment.view2.solarize_prob") is None
    assert editor.model.config().to_dict()["augment"]["view2"] == {}


def test_preset_with_view_tables_fills_the_tabs_and_saves_only_overrides(editor, tmp_path):
    editor.model.apply_preset("byol")
    field = editor.form.editors["augment.view2.solarize_prob"]
    assert field.override.isChecked() and field.input.value() == pytest.approx(0.2)
    assert not editor.form.editors["augment.view1.solarize_prob"].override.isChecked()
    editor.model.save(tmp_path / "b.toml")
    text = (tmp_path / "b.toml").read_text()
    assert "[augment.view2]\nsolarize_prob = 0.2" in text


def test_bad_view_value_shows_on_its_field(editor):
    editor.model.set_value("augment.view1.blur_prob", 1.5)
    assert editor.model.field_errors["augment.view1.blur_prob"]
    editor.form.focus_field("augment.view1.blur_prob")   # its tab (only the current tab's page is shown)
    assert editor.form.editors["augment.view1.blur_prob"].error_label.isVisibleTo(editor.form)


def test_only_the_current_tab_page_is_shown(editor):
    """Pages of the other tabs stay hidden after the form updates (they used to be shown too, drawn
    over the current page with their labels mixed into its own)."""
    tabs = editor.form.augment_tabs
    editor.model.set_value("optim.lr", 0.2)   # any change updates which rows are visible
    for index in range(tabs.count()):
        assert tabs.widget(index).isVisibleTo(tabs) == (index == tabs.currentIndex())
    tabs.setCurrentIndex(2)
    editor.model.set_value("optim.lr", 0.3)
    assert [tabs.widget(i).isVisibleTo(tabs) for i in range(tabs.count())] == [False, False, True, False]


class _Ctx:
    cancelled = False

    def progress(self, *_a):
        pass

    def check(self):
        pass


def test_preview_renders_each_view_as_the_trainer_does():
    data = quick_small(augment={"view1": {"blur_prob": 1.0}, "view2": {"solarize_prob": 1.0},
                                "num_local_crops": 1, "local": {"grayscale_prob": 1.0}})
    cfg = ExperimentConfig.from_dict(data)
    out = render_views(_Ctx(), cfg.to_dict(), 6, 3)
    dataset = _dataset(cfg.data, cfg.runtime.seed, lambda _m: None)
    idx = pick_indices(None if dataset.labels is None else dataset.labels.numpy(), 6, 3, len(dataset))
    images = dataset.images[torch.as_tensor(idx)]
    views, params = ViewGenerator(cfg.augment, cfg.data.image_size).sample(images, torch.Generator().manual_seed(3))
    rows = dict(out["rows"])
    for name, view in (("view 1", views[0]), ("view 2", views[1]), ("local 1", views[2])):
        want = (view.clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).numpy()
        assert np.array_equal(rows[name], want), name
    assert params[0].blur.all() and params[1].solarize.all() and params[2].grayscale.all()
    local = rows["local 1"].astype(int)
    assert (np.abs(local[..., 0] - local[..., 1]) <= 1).all()  # grayscale: channels equal
