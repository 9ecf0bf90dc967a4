"""Per-view augmentation pipelines: [augment.view1] / [augment.view2] / [augment.local] overrides."""

import pytest
import torch

from backend.config import ExperimentConfig
from backend.config_augment import resolved_view
from backend.data.augment import ViewGenerator, apply_view, sample_view_params
from backend.errors import ConfigError


def _images(n=16, seed=7):
    return torch.randint(0, 256, (n, 3, 32, 32), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def test_old_flat_config_gives_the_views_recorded_before_per_view_pipelines():
    """Checksums recorded with the symmetric-only ViewGenerator (before the change), same seed."""
    cfg = ExperimentConfig.from_dict({"augment": {"num_local_crops": 2, "blur_prob": 0.5, "solarize_prob": 0.3}})
    views = ViewGenerator(cfg.augment, 32)(_images(8), torch.Generator().manual_seed(123))
    sums = [float(v.double().sum()) for v in views]
    abs_sums = [float(v.double().abs().sum()) for v in views]
    assert sums == pytest.approx([-466.363, 920.409, -919.44, -1136.488], abs=0.05)
    assert abs_sums == pytest.approx([12557.339, 11887.002, 4591.797, 2334.767], abs=0.05)


def test_unset_tables_equal_the_shared_pipeline_drawn_directly():
    cfg = ExperimentConfig.from_dict({"augment": {"blur_prob": 0.5}})
    a = cfg.augment
    imgs = _images()
    views, _ = ViewGenerator(a, 32).sample(imgs, torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(5)
    for v in views:
        p = sample_view_params(16, 32, 32, scale=a.crop_scale, ratio=a.crop_ratio, hflip_prob=a.hflip_prob,
                               jitter_prob=a.jitter_prob, brightness=a.brightness, contrast=a.contrast,
                               saturation=a.saturation, hue=a.hue, grayscale_prob=a.grayscale_prob,
                               blur_prob=a.blur_prob, blur_sigma=a.blur_sigma, solarize_prob=a.solarize_prob,
                               generator=g)
        assert torch.equal(v, apply_view(imgs, p, 32, solarize_threshold=a.solarize_threshold))


def test_each_view_gets_its_own_parameters():
    cfg = ExperimentConfig.from_dict({"augment": {
        "num_local_crops": 2, "solarize_prob": 0.0, "blur_prob": 0.0,
        "view1": {"blur_prob": 1.0, "blur_sigma": [1.5, 1.5]},
        "view2": {"solarize_prob": 1.0, "solarize_threshold": 0.3},
        "local": {"crop_scale": [0.9, 1.0], "hflip_prob": 0.0, "grayscale_prob": 1.0}}})
    gen = ViewGenerator(cfg.augment, 32)
    _, params = gen.sample(_images(), torch.Generator().manual_seed(0))
    v1, v2, l1, l2 = params
    assert v1.blur.all() and torch.allclose(v1.sigma, torch.full((16,), 1.5)) and not v1.solarize.any()
    assert v2.solarize.all() and not v2.blur.any()
    assert gen.pipeline(1)["solarize_threshold"] == 0.3 and gen.pipeline(0)["solarize_threshold"] == 0.5
    for lp in (l1, l2):
        assert lp.grayscale.all() and not lp.flip.any() and not lp.solarize.any()
        area = lp.boxes[:, 2] * lp.boxes[:, 3] / (32 * 32)
        assert (area >= 0.85).all()  # own crop scale (0.9, 1), rounding of the box sides aside


def test_view2_solarised_images_differ_from_unsolarised_render():
    cfg = ExperimentConfig.from_dict({"augment": {"view2": {"solarize_prob": 1.0}}})
    imgs = _images()
    views, params = ViewGenerator(cfg.augment, 32).sample(imgs, torch.Generator().manual_seed(1))
    p2 = params[1]
    p2.solarize = torch.zeros_like(p2.solarize)
    plain = apply_view(imgs, p2, 32)
    assert torch.allclose(views[1], torch.where(plain >= 0.5, 1.0 - plain, plain))
    assert not params[0].solarize.any()


def test_resolved_view_and_round_trip(tmp_path):
    cfg = ExperimentConfig.from_dict({"augment": {"saturation": 0.2, "view2": {"solarize_prob": 0.2}}})
    assert resolved_view(cfg.augment, "view2")["solarize_prob"] == 0.2
    assert resolved_view(cfg.augment, "view2")["saturation"] == 0.2
    assert resolved_view(cfg.augment, "view1")["solarize_prob"] == 0.0
    assert resolved_view(cfg.augment, "local")["crop_scale"] == cfg.augment.local_crop_scale
    assert cfg.to_dict()["augment"]["view2"] == {"solarize_prob": 0.2}
    assert cfg.to_dict()["augment"]["view1"] == {}
    for name in ("c.toml", "c.json"):
        cfg.save(tmp_path / name)
        from backend.config import load_config
        assert load_config(tmp_path / name) == cfg


def test_bad_view_values_are_named_by_path():
    with pytest.raises(ConfigError) as err:
        ExperimentConfig.from_dict({"augment": {"view1": {"blur_prob": 1.5, "crop_scale": [0.5, 0.2]},
                                                "local": {"nope": 1}}})
    text = str(err.value)
    assert "augment.view1.blur_prob must be <= 1" in text
    assert "augment.view1.crop_scale must be [min, max]" in text
    assert "augment.local.nope is not a known field" in text
