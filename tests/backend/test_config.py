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


# ---- the [method] section is derived from the method registry --------------------------------------
# The flat MethodConfig of before the registry: every field with its default (old configs hold all).
OLD_FLAT_METHOD_DEFAULTS = {
    "temperature": 0.5, "queue_size": 4096, "momentum": 0.99, "momentum_final": 1.0, "shuffle_bn": True,
    "dclw_sigma": 0.5, "barlow_lambda": 0.005, "barlow_scale": 0.1, "sim_weight": 25.0, "var_weight": 25.0,
    "cov_weight": 1.0, "out_dim": 4096, "student_temp": 0.1, "teacher_temp": 0.04, "warmup_teacher_temp": 0.04,
    "teacher_temp_warmup_epochs": 30, "center_momentum": 0.9, "norm_last_layer": True,
    "freeze_last_layer_epochs": 1.0, "sinkhorn_epsilon": 0.05, "sinkhorn_iterations": 3,
    "freeze_prototypes_steps": 313, "queue_start_epoch": 0}

# The methods of the flat MethodConfig era (their defaults must not move).
OLD_METHODS = {"simclr", "moco", "mocov1", "mocov3", "byol", "simsiam", "dino", "barlow_twins", "vicreg",
               "swav", "nnclr", "dcl", "dclw", "rotation", "supervised"}


def test_every_method_keeps_its_old_defaults():
    from backend.methods.catalog import method_specs
    specs = method_specs()
    assert len(specs) >= 15
    declared = set()
    for name, spec in specs.items():
        cfg = ExperimentConfig.from_dict({"method": {"name": name}})
        for key, param in spec.params.items():
            assert getattr(cfg.method, key) == param.default, (name, key)
            if name in OLD_METHODS and key in OLD_FLAT_METHOD_DEFAULTS:  # later methods and fields: own defaults
                assert param.default == OLD_FLAT_METHOD_DEFAULTS[key], (name, key)
        declared |= set(spec.params)
    assert declared >= set(OLD_FLAT_METHOD_DEFAULTS)  # every old field is still some method's


@pytest.mark.parametrize("method", ["dino", "moco", "supervised"])
def test_an_old_run_config_with_every_field_still_loads(tmp_path, method):
    from backend.runs import read_run_config
    old = {"name": method, "method": {"name": method, **OLD_FLAT_METHOD_DEFAULTS, "momentum": 0.996}}
    (tmp_path / "config.json").write_text(json.dumps({"config": old, "device": "cpu"}))
    cfg = read_run_config(tmp_path)
    own = ExperimentConfig.from_dict({"method": {"name": method}}).to_dict()["method"]
    assert list(cfg.to_dict()["method"]) == list(own)  # flat: name, then the method's own fields
    if method in ("dino", "moco"):
        assert cfg.method.momentum == 0.996
    assert not hasattr(cfg.method, "dclw_sigma")


def test_unknown_method_field_names_the_known_ones():
    with pytest.raises(ConfigError) as info:
        ExperimentConfig.from_dict({"method": {"name": "byol", "momentm": 0.9, "momentum": 1.5}})
    assert info.value.errors == ["method.momentm is not a known field (known: momentum, momentum_final, name)",
                                 "method.momentum must be <= 1, got 1.5"]


def test_method_section_round_trips_and_pickles(tmp_path):
    import copy
    import pickle
    cfg = load_preset("dino")
    assert pickle.loads(pickle.dumps(cfg)) == cfg and copy.deepcopy(cfg) == cfg
    cfg.save(tmp_path / "dino.toml")
    assert load_config(tmp_path / "dino.toml") == cfg
    switched = cfg.updated({"method": {"name": "simclr"}})  # dino's fields are dropped, simclr's defaulted
    assert switched.to_dict()["method"] == {"name": "simclr", "temperature": 0.5, "projector_last_bn": False}


def test_specs_read_from_source_equal_the_imported_ones():
    import importlib

    from backend.methods import METHODS
    from backend.methods.catalog import method_specs, module_of
    for name, spec in method_specs().items():
        module = importlib.import_module(f"backend.methods.{module_of(name)}")
        assert module.SPEC == spec and METHODS[name].spec == spec
        assert METHODS[name].families == spec.backbones and METHODS[name].uses_labels == spec.uses_labels


def test_a_spec_may_use_only_the_spec_module(tmp_path):
    from backend.methods.catalog import read_spec
    bad = tmp_path / "bad.py"
    bad.write_text("import torch\nWIDTH = 3\nSPEC = MethodSpec(name='bad', label='Bad', family=CONTRASTIVE,\n"
                   "                 params={'w': Param(WIDTH, 'width')})\n")
    with pytest.raises(ValueError, match="bad.py: SPEC must be built from backend.methods.spec's names only"):
        read_spec(bad)
    (tmp_path / "none.py").write_text("X = 1\n")
    assert read_spec(tmp_path / "none.py") is None


def test_bare_register_without_a_spec_is_refused():
    from backend.methods import register
    from backend.methods.base import Method

    class Nameless(Method):
        name = "nameless"
    with pytest.raises(TypeError, match="has no spec: declare SPEC = MethodSpec"):
        register(Nameless)


def test_fields_a_method_reads_are_marked_method_specific():
    from backend.config import field_meta
    from backend.methods.catalog import method_specs
    reads = {path for spec in method_specs().values() for path in spec.reads}
    assert "model.predictor_hidden_dim" in reads
    for path in reads:
        assert field_meta(path)["method_specific"], path
