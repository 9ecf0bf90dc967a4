"""ExperimentConfig: defaults, validation with field paths, TOML/JSON round trips, presets."""

import json

import pytest

from backend.config import (ExperimentConfig, list_presets, load_config, load_preset, parse_override,
                            validation_errors)
from backend.errors import ConfigError


def test_defaults_are_valid():
    assert validation_errors(ExperimentConfig()) == []


def test_error_names_field_and_value():
    with pytest.raises(ConfigError) as info:
        ExperimentConfig.from_dict({"method": {"temperature": -1}})
    assert info.value.errors == ["method.temperature must be > 0, got -1.0"]


def test_all_errors_reported_at_once():
    bad = {"optim": {"lr": 0, "batch_size": "big"}, "model": {"backbone": "vgg"},
           "method": {"name": "nope"}, "data": {"nonsense": 1}}
    with pytest.raises(ConfigError) as info:
        ExperimentConfig.from_dict(bad)
    text = "\n".join(info.value.errors)
    for fragment in ("optim.lr must be > 0", "optim.batch_size must be of type int",
                     "model.backbone must be one of", "method.name must be one of",
                     "data.nonsense is not a known field"):
        assert fragment in text


def test_cross_field_rules():
    with pytest.raises(ConfigError) as info:
        ExperimentConfig.from_dict({"data": {"synthetic_train_size": 100}, "optim": {"batch_size": 256},
                                    "augment": {"crop_scale": [0.9, 0.1], "local_crop_size": 64}})
    text = "\n".join(info.value.errors)
    assert "optim.batch_size must be <= data.synthetic_train_size" in text
    assert "augment.crop_scale must be [min, max]" in text
    assert "augment.local_crop_size must be <= data.image_size" in text


@pytest.mark.parametrize("suffix", [".toml", ".json"])
def test_round_trip(tmp_path, suffix):
    cfg = ExperimentConfig.from_dict({"name": "x", "optim": {"lr": 0.3}, "augment": {"crop_scale": [0.2, 1.0]}})
    path = tmp_path / f"cfg{suffix}"
    cfg.save(path)
    assert load_config(path) == cfg


def test_bad_file_is_named(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text("[optim\nlr = ")
    with pytest.raises(ConfigError, match="broken.toml is not valid TOML"):
        load_config(path)
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"optim": {"lr": -2}}))
    with pytest.raises(ConfigError, match="optim.lr must be > 0"):
        load_config(path)


def test_presets_load_and_quick_is_synthetic_cpu_sized():
    names = list_presets()
    assert {"quick", "simclr", "moco"} <= set(names)
    for name in names:
        load_preset(name)
    quick = load_preset("quick")
    assert quick.data.source == "synthetic" and quick.model.backbone == "tiny_cnn"


def test_parse_override():
    assert parse_override("optim.lr=0.5") == {"optim": {"lr": 0.5}}
    assert parse_override("data.source=cifar10") == {"data": {"source": "cifar10"}}
    assert parse_override("augment.crop_scale=[0.2, 1.0]") == {"augment": {"crop_scale": [0.2, 1.0]}}
    with pytest.raises(ConfigError):
        parse_override("nonsense")
