"""The editor's observable state: a nested config dict, its validation errors and field visibility.

``ConfigModel`` holds the values being edited (not widgets), validates them with the same
``ExperimentConfig.from_dict`` the CLI and trainer use, and maps each error sentence to the field
whose path starts it. Widgets observe it through its signals (model/view split).
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

from PySide6.QtCore import QObject, Signal

from backend.config import (ExperimentConfig, deep_merge, iter_fields, preset_dict,
                            read_config_dict)
from backend.errors import ConfigError

DEFAULTS = ExperimentConfig().to_dict()
FIELDS = {path: f for path, f, _ in iter_fields(ExperimentConfig())}  # leaf path -> dataclass field
SECTIONS = [f.name for f in dataclasses.fields(ExperimentConfig)
            if dataclasses.is_dataclass(f.type) or f.name in DEFAULTS and isinstance(DEFAULTS[f.name], dict)]
TORCHVISION_SOURCES = ("cifar10", "cifar100", "stl10")


def get_path(data: dict, path: str):
    """Value at dotted ``path`` of a nested dict."""
    for part in path.split("."):
        data = data[part]
    return data


def set_path(data: dict, path: str, value) -> None:
    """Set dotted ``path`` of a nested dict in place."""
    *parents, leaf = path.split(".")
    for part in parents:
        data = data.setdefault(part, {})
    data[leaf] = value


def error_field(sentence: str) -> str | None:
    """The field path an error sentence starts with ('optim.lr must be > 0, ...' -> 'optim.lr')."""
    head = sentence.split(" ", 1)[0].rstrip(":,")
    return head if head in FIELDS else None


def field_visible(path: str, data: dict) -> bool:
    """Whether the field at ``path`` matters for the config ``data`` (method, source, optimiser...)."""
    meta = FIELDS[path].metadata
    methods = meta.get("methods")
    if methods and get_path(data, "method.name") not in methods:
        return False
    source = get_path(data, "data.source")
    if path.startswith("data.synthetic_"):
        return source == "synthetic"
    if path == "data.val_fraction":
        return source.startswith("imagefolder:")
    if path == "data.download_root":
        return source in TORCHVISION_SOURCES
    optimizer = get_path(data, "optim.optimizer")
    if path == "optim.lars_eta":
        return optimizer == "lars"
    if path == "optim.momentum":
        return optimizer in ("sgd", "lars")
    if path in ("augment.local_crop_size", "augment.local_crop_scale"):
        return get_path(data, "augment.num_local_crops") > 0
    if path == "augment.blur_sigma":
        return get_path(data, "augment.blur_prob") > 0
    if path == "augment.solarize_threshold":
        return get_path(data, "augment.solarize_prob") > 0
    return True


def preset_method(name: str) -> str:
    """The method a preset trains (its method.name, or the default method)."""
    try:
        return preset_dict(name).get("method", {}).get("name", DEFAULTS["method"]["name"])
    except ConfigError:
        return ""


def read_editable(path) -> dict:
    """Read a TOML/JSON config (or a run's config.json) as a full dict for the editor.

    Range problems are kept (the editor shows them inline); unknown keys and wrong types raise
    ConfigError, since the form cannot show them - listing every problem of the file at once,
    range problems included, so one round of fixes is enough."""
    data = read_config_dict(path)
    if isinstance(data, dict) and "config" in data and Path(path).name == "config.json":
        data = data["config"]  # a run directory's config.json
    base = data.pop("base", None) if isinstance(data, dict) else None
    if base:
        data = deep_merge(preset_dict(base), data)
    try:
        return ExperimentConfig.from_dict(data, validate=False).to_dict()
    except ConfigError:
        ExperimentConfig.from_dict(data)   # raises with every problem, not only the structural ones
        raise


class ConfigModel(QObject):
    """The config being edited. Signals: ``valueChanged(path, value)`` for one field,
    ``reset()`` when every value changed (preset, file), ``validated()`` after every check."""

    valueChanged = Signal(str, object)
    reset = Signal()
    validated = Signal()

    def __init__(self, data: dict | None = None, parent: QObject | None = None):
        super().__init__(parent)
        self._data = deep_merge(DEFAULTS, data or {})
        self.field_errors: dict[str, list[str]] = {}
        self.general_errors: list[str] = []
        self.source_path: Path | None = None
        self.modified = False
        self._validate()

    # ---- reading ------------------------------------------------------------------------
    def data(self) -> dict:
        """A deep copy of the current nested values."""
        return copy.deepcopy(self._data)

    def value(self, path: str):
        """Current value of a leaf field."""
        return get_path(self._data, path)

    @property
    def method(self) -> str:
        """The selected method name."""
        return self._data["method"]["name"]

    @property
    def errors(self) -> list[str]:
        """Every validation sentence (field errors first)."""
        return [e for errs in self.field_errors.values() for e in errs] + self.general_errors

    @property
    def is_valid(self) -> bool:
        """True when the config passes validation."""
        return not self.field_errors and not self.general_errors

    def config(self) -> ExperimentConfig:
        """The validated ExperimentConfig (raises ConfigError when invalid)."""
        return ExperimentConfig.from_dict(self._data)

    def visible(self, path: str) -> bool:
        """Whether a field applies to the current method/source/optimiser."""
        return field_visible(path, self._data)

    # ---- writing ------------------------------------------------------------------------
    def set_value(self, path: str, value) -> None:
        """Change one field and revalidate."""
        if get_path(self._data, path) == value:
            return
        set_path(self._data, path, copy.deepcopy(value))
        self.modified = True
        self.valueChanged.emit(path, value)
        self._validate()

    def set_data(self, data: dict, *, source_path=None) -> None:
        """Replace every value (missing keys take their defaults) and revalidate."""
        self._data = deep_merge(DEFAULTS, data or {})
        self.source_path = Path(source_path) if source_path else None
        self.modified = False
        self.reset.emit()
        self._validate()

    def apply_preset(self, name: str) -> None:
        """Fill the form from preset ``name`` (over the defaults)."""
        self.set_data(preset_dict(name))
        self.modified = True

    def load(self, path) -> None:
        """Load a config file (raises ConfigError when it cannot be shown in the form)."""
        self.set_data(read_editable(path), source_path=path)

    def save(self, path) -> None:
        """Write the current values to a .toml or .json file."""
        ExperimentConfig.from_dict(self._data, validate=False).save(path)
        self.source_path, self.modified = Path(path), False

    def _validate(self) -> None:
        try:
            ExperimentConfig.from_dict(self._data)
            errors = []
        except ConfigError as exc:
            errors = exc.errors
        except Exception as exc:  # a broken backend install must not take the editor down
            errors = [f"the config cannot be checked: {type(exc).__name__}: {exc}"]
        self.field_errors, self.general_errors = {}, []
        for sentence in errors:
            path = error_field(sentence)
            if path is None:
                self.general_errors.append(sentence)
            else:
                self.field_errors.setdefault(path, []).append(sentence)
        self.validated.emit()
