"""The method registry end to end: a throwaway method declared here (its own SPEC and class, no
file in backend/methods) is validated, edited and trained; and config work never imports torch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from backend import losses
from backend.config import ExperimentConfig
from backend.errors import ConfigError
from backend.events import read_events
from backend.methods import METHODS, register, unregister
from backend.methods.base import PairLossMethod
from backend.methods.catalog import method_specs
from backend.methods.spec import CONTRASTIVE, MethodSpec, Param, temperature
from backend.train import run_training
from workbench import workers
from workbench.editor import ExperimentEditor

from ..backend.trainer_helpers import make_run
from .conftest import quick_small

ROOT = Path(__file__).resolve().parents[2]

SPEC = MethodSpec(
    name="toy_pairs", label="Toy pairs (test)", family=CONTRASTIVE,
    help="NT-Xent scaled by a weight: a method that exists only in this test module.",
    params={"toy_weight": Param(2.0, "Toy: weight of the contrastive loss.", gt=0.0, le=10.0),
            "temperature": temperature(0.3)},
)


class ToyPairs(PairLossMethod):
    """SimCLR's loss times ``method.toy_weight``."""

    def loss(self, z1, z2):
        m = self.cfg.method
        return m.toy_weight * losses.nt_xent(z1, z2, temperature=m.temperature)


@pytest.fixture
def toy():
    """The toy method registered in-process for one test."""
    register(SPEC)(ToyPairs)
    yield ToyPairs
    unregister(SPEC.name)
    assert SPEC.name not in method_specs() and SPEC.name not in METHODS


def test_a_registered_method_is_validated_from_its_spec(toy):
    assert METHODS["toy_pairs"] is ToyPairs and ToyPairs.label == "Toy pairs (test)"
    cfg = ExperimentConfig.from_dict({"method": {"name": "toy_pairs"}})
    assert cfg.method.toy_weight == 2.0 and cfg.method.temperature == 0.3  # its own defaults
    assert cfg.to_dict()["method"] == {"name": "toy_pairs", "toy_weight": 2.0, "temperature": 0.3}
    with pytest.raises(ConfigError) as info:
        ExperimentConfig.from_dict({"method": {"name": "toy_pairs", "toy_weight": 11, "temperature": 0}})
    assert info.value.errors == ["method.toy_weight must be <= 10, got 11.0",
                                 "method.temperature must be > 0, got 0.0"]
    with pytest.raises(ConfigError) as info:
        ExperimentConfig.from_dict({"method": {"name": "toy_pairs", "toy_wieght": 1.0, "toy_weight": "x"}})
    assert info.value.errors == [
        "method.toy_wieght is not a known field (known: name, temperature, toy_weight)",
        "method.toy_weight must be of type float, got str 'x'"]
    # another method's hyperparameter (old configs hold all of them) is accepted and dropped
    old = ExperimentConfig.from_dict({"method": {"name": "toy_pairs", "queue_size": 16, "dclw_sigma": 0.5}})
    assert not hasattr(old.method, "queue_size")
    # the toy's own field is unknown to other methods once it is gone
    unregister("toy_pairs")
    with pytest.raises(ConfigError) as info:
        ExperimentConfig.from_dict({"method": {"name": "simclr", "toy_weight": 1.0}})
    assert info.value.errors == ["method.toy_weight is not a known field (known: name, projector_last_bn, temperature)"]
    register(SPEC)(ToyPairs)


def test_the_editor_shows_the_field_only_for_its_method(toy, qtbot):
    workers.set_synchronous(True)
    editor = ExperimentEditor()
    qtbot.addWidget(editor)
    editor.model.set_data(quick_small())
    editor.show()
    weight = editor.form.editors["method.toy_weight"]
    assert editor.model.method == "simclr" and weight.isHidden()
    idx = editor.method_combo.findData("toy_pairs")
    assert idx >= 0 and editor.method_combo.itemText(idx) == "Toy pairs (test)"
    editor.method_combo.setCurrentIndex(idx)
    assert editor.model.method == "toy_pairs"
    assert not weight.isHidden() and not editor.form.editors["method.temperature"].isHidden()
    assert editor.form.editors["method.queue_size"].isHidden()
    assert weight.input.maximum() == 10.0 and "weight of the contrastive loss" in weight.input.toolTip()
    assert weight.value() == 2.0
    editor.model.set_value("method.toy_weight", 12.0)
    assert editor.model.field_errors["method.toy_weight"] == ["method.toy_weight must be <= 10, got 12.0"]
    assert not editor.launch_button.isEnabled() and not weight.error_label.isHidden()
    editor.model.set_value("method.toy_weight", 1.5)
    assert editor.model.is_valid and editor.model.config().method.toy_weight == 1.5
    editor.method_combo.setCurrentIndex(editor.method_combo.findData("simclr"))
    assert weight.isHidden()


def test_a_registered_method_trains(toy, tmp_path):
    run = make_run(tmp_path, method={"name": "toy_pairs", "toy_weight": 0.5},
                   schedule={"epochs": 1}, eval={"knn_every_epochs": 0})
    assert run_training(run, echo=False) == 0
    events = read_events(run / "events.jsonl")
    loss = [e["value"] for e in events if e["kind"] == "metric" and e["name"] == "loss"]
    assert loss and all(v == v for v in loss)  # finite losses were logged
    assert any(e["kind"] == "status" and e["state"] == "finished" for e in events)
    saved = json.loads((run / "config.json").read_text())
    saved = saved.get("config", saved)
    assert saved["method"] == {"name": "toy_pairs", "toy_weight": 0.5, "temperature": 0.2}


def _run_python(code: str, tmp_path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT), QT_QPA_PLATFORM="offscreen",
               SSLWB_SETTINGS=str(tmp_path / "settings.ini"))
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=180)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


VALIDATE = """
import json, sys
from backend.config import ExperimentConfig, list_presets, load_preset
from backend.errors import ConfigError
from backend.data.registry import check_source, describe_source
for name in list_presets():
    load_preset(name)
try:
    ExperimentConfig.from_dict({"method": {"name": "moco", "queue_size": 0}, "data": {"source": "nope"}})
except ConfigError as exc:
    errors = exc.errors
check_source("synthetic"); describe_source("cifar10")
print(json.dumps({"torch": "torch" in sys.modules, "errors": errors}))
"""


def test_validating_a_config_does_not_import_torch(tmp_path):
    out = _run_python(VALIDATE, tmp_path)
    assert out["torch"] is False
    assert out["errors"][0] == "method.queue_size must be >= 1, got 0"


EDITOR = """
import json, sys
from PySide6.QtWidgets import QApplication
app = QApplication([])
import workbench.main_window  # noqa: F401 - the whole GUI's imports
import workbench.editor
from workbench import settings, workers
settings.use_ini_file(None)
# The device list is the editor's one deliberate torch import (a worker warm-up, not config work).
workbench.editor.warm_up = lambda ctx=None: [("CPU", "cpu")]
workers.set_synchronous(True)
editor = workbench.editor.ExperimentEditor()
editor.show()
app.processEvents()
for name in ("dino", "swav", "byol"):
    editor.method_combo.setCurrentIndex(editor.method_combo.findData(name))
editor.model.set_value("method.out_dim", 1)
editor.model.set_value("data.source", "cifar10")
print(json.dumps({"torch": "torch" in sys.modules, "errors": editor.model.errors,
                  "torchvision": "torchvision" in sys.modules}))
"""


def test_the_gui_and_its_editor_do_not_import_torch(tmp_path):
    out = _run_python(EDITOR, tmp_path)
    assert out["torch"] is False and out["torchvision"] is False
    assert out["errors"] == []  # byol does not declare out_dim: the dino/swav value is kept, unused
