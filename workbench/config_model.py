"""The editor's observable state: a nested config dict, its validation errors and field visibility.

``ConfigModel`` holds the values being edited (not widgets), validates them with the same
``ExperimentConfig.from_dict`` the CLI and trainer use, and maps each error sentence to the field
whose path starts it. Widgets observe it through its signals (model/view split).
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import NamedTuple, get_type_hints

from PySide6.QtCore import QObject, Signal

from backend.config import ExperimentConfig, MethodConfig, deep_merge, field_meta, preset_dict, read_config_dict
from backend.config_augment import VIEW_KEYS, VIEW_TABLES
from backend.data.registry import SOURCES, check_source, source_kind
from backend.errors import ConfigError
from backend.method_config import all_method_defaults
from backend.methods import method_spec, method_specs

from . import workers

DEFAULTS = ExperimentConfig().to_dict()
_schema_cache: dict = {}  # the registry's specs -> the schema built from them
MAX_FOLDER_VERDICTS = 32  # folder checks remembered (paths typed letter by letter add up)


class FieldInfo(NamedTuple):
    """One leaf field of the editable schema: its name in the section, type and metadata."""

    name: str
    type: type
    meta: dict


def schema() -> dict[str, tuple[str, dict[str, FieldInfo]]]:
    """Section name -> (help, {leaf path: FieldInfo}) of everything the editor can show: the
    config dataclasses' fields plus every registered method's hyperparameters (read from the
    registry, so a method registered later appears too; cached while the registry is unchanged)."""
    specs = tuple(method_specs().values())
    if _schema_cache.get("specs") == specs:
        return _schema_cache["schema"]
    out = {}
    for top in dataclasses.fields(ExperimentConfig):
        tp = get_type_hints(ExperimentConfig)[top.name]
        if not dataclasses.is_dataclass(tp):
            continue
        leaves, subsections = {}, {}
        hints = get_type_hints(tp)
        for f in dataclasses.fields(tp):
            if dataclasses.is_dataclass(hints[f.name]):  # a nested table (augment.view1 ...): its own section
                sub = f"{top.name}.{f.name}"
                sub_hints = get_type_hints(hints[f.name])
                subsections[sub] = (f.metadata.get("help", ""), {
                    f"{sub}.{g.name}": FieldInfo(g.name, sub_hints[g.name], dict(g.metadata))
                    for g in dataclasses.fields(hints[f.name])})
                continue
            leaves[f"{top.name}.{f.name}"] = FieldInfo(f.name, hints[f.name], dict(f.metadata))
        if tp is MethodConfig:
            for spec in method_specs().values():
                for key, param in spec.params.items():
                    path = f"method.{key}"
                    if path not in leaves:
                        leaves[path] = FieldInfo(key, param.type, field_meta(path))
        out[top.name] = (top.metadata.get("help", ""), leaves)
        out.update(subsections)
    fields = {path: info for _, leaves in out.values() for path, info in leaves.items()}
    _schema_cache.update(specs=specs, schema=out, fields=fields)
    return out


def schema_fields() -> dict[str, FieldInfo]:
    """Leaf path -> FieldInfo of every editable field (shared: do not modify)."""
    schema()
    return _schema_cache["fields"]


def editable(data: dict | None) -> dict:
    """``data`` over the defaults, its method section holding every method's hyperparameters (the
    selected method's defaults first), so switching the method keeps a value for every field."""
    out = deep_merge(DEFAULTS, data or {})
    if isinstance(out.get("augment"), dict):  # every per-view override key present (None = shared value)
        for table in VIEW_TABLES:
            given = out["augment"].get(table)
            out["augment"][table] = {**dict.fromkeys(VIEW_KEYS), **(given if isinstance(given, dict) else {})}
    if isinstance(out.get("method"), dict):
        name = out["method"].get("name")
        out["method"] = {**all_method_defaults(name if isinstance(name, str) else None), **out["method"]}
    return out


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
    return head if head in schema_fields() else None


def field_visible(path: str, data: dict) -> bool:
    """Whether the field at ``path`` matters for the config ``data`` (method, source, optimiser...)."""
    method = method_spec(get_path(data, "method.name"))
    if path.startswith("method.") and path != "method.name":
        return method is not None and path[len("method."):] in method.params
    if schema_fields()[path].meta.get("method_specific"):
        return method is not None and path in method.reads
    if any(path in s.reads for s in SOURCES):
        kind = source_kind(get_path(data, "data.source"))
        return kind is not None and path in kind.reads
    optimizer = get_path(data, "optim.optimizer")
    if path == "optim.lars_eta":
        return optimizer == "lars"
    if path == "optim.momentum":
        return optimizer in ("sgd", "lars")
    if path in ("optim.adam_beta1", "optim.adam_beta2"):
        return optimizer == "adamw"
    if path in ("augment.local_crop_size", "augment.local_crop_scale"):
        return get_path(data, "augment.num_local_crops") > 0
    if path == "augment.blur_sigma":
        return get_path(data, "augment.blur_prob") > 0
    if path == "augment.solarize_threshold":
        return get_path(data, "augment.solarize_prob") > 0
    if path.startswith("augment.local."):
        return get_path(data, "augment.num_local_crops") > 0
    return True


def needs_folder_check(source) -> bool:
    """Whether ``source`` names files on disk that must be checked before a launch."""
    kind = source_kind(source) if isinstance(source, str) else None
    return kind is not None and kind.takes_path and bool(source.partition(":")[2].strip())


CHOOSE_FOLDER = "data.source: choose the image folder (Browse…, or type its path)"


def friendly_error(sentence: str, data: dict) -> str:
    """The sentence to show for a validation error: a folder source without a path yet gets a
    prompt to choose one instead of the schema's list of every source syntax."""
    source = data.get("data", {}).get("source")
    kind = source_kind(source) if isinstance(source, str) else None
    if sentence.startswith("data.source ") and kind is not None and kind.takes_path \
            and not source.partition(":")[2].strip():
        return CHOOSE_FOLDER
    return sentence


def folder_check_task(_ctx, source: str) -> str:
    """Worker: ``check_source``'s sentence for ``source`` ('' when it looks usable)."""
    return check_source(source) or ""


def inherited_path(path: str) -> str | None:
    """For a per-view override ('augment.view1.blur_prob'), the shared field it defaults to
    ('augment.blur_prob'; the local views' crop_scale: 'augment.local_crop_scale'); else None."""
    parts = path.split(".")
    if len(parts) != 3 or parts[0] != "augment" or parts[1] not in VIEW_TABLES:
        return None
    if parts[1] == "local" and parts[2] == "crop_scale":
        return "augment.local_crop_scale"
    return f"augment.{parts[2]}"


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
    ``reset()`` when every value changed (preset, file), ``validated()`` after every check.

    Validity includes the data folder: a folder source is checked off the GUI thread
    (``check_source``, once per path until ``recheck_source``); while that check runs,
    ``pending`` says so and the config is not valid yet; its problem becomes a data.source error."""

    valueChanged = Signal(str, object)
    reset = Signal()
    validated = Signal()

    def __init__(self, data: dict | None = None, parent: QObject | None = None):
        super().__init__(parent)
        self._data = editable(data)
        self.field_errors: dict[str, list[str]] = {}
        self.general_errors: list[str] = []
        self.source_path: Path | None = None
        self.modified = False
        self.pending = ""                       # what validity still waits for ('' = nothing)
        self._folder_verdicts: dict[str, str] = {}   # source -> problem ('' = usable)
        self._checking: set[str] = set()
        self._validating = False
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
        """True when the config passes validation (its data folder checked and usable)."""
        return not self.field_errors and not self.general_errors and not self.pending

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
        if path == "method.name":  # fields the new method declares and nobody set take its defaults
            self._data["method"] = {**all_method_defaults(value), **self._data["method"]}
        self.modified = True
        self.valueChanged.emit(path, value)
        self._validate()

    def set_data(self, data: dict, *, source_path=None) -> None:
        """Replace every value (missing keys take their defaults) and revalidate."""
        self._data = editable(data)
        self.source_path = Path(source_path) if source_path else None
        self.modified = False
        self._folder_verdicts.clear()   # a file or preset: look at its folder afresh
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

    # ---- the data folder check ----------------------------------------------------------
    def recheck_source(self) -> None:
        """Forget the verdict on the current data folder and check it again (Rescan, Launch)."""
        self._folder_verdicts.pop(self.value("data.source"), None)
        self._validate()

    def set_folder_problem(self, source: str, problem: str) -> None:
        """Record what a scan or the launch check found about ``source`` ('' = usable)."""
        self._remember(source, problem)
        if source == self.value("data.source"):
            self._validate()

    def _remember(self, source: str, problem: str) -> None:
        self._folder_verdicts.pop(source, None)
        self._folder_verdicts[source] = problem or ""
        while len(self._folder_verdicts) > MAX_FOLDER_VERDICTS:
            self._folder_verdicts.pop(next(iter(self._folder_verdicts)))

    def _folder_checked(self, source: str, problem: str) -> None:
        self._checking.discard(source)
        self._remember(source, problem)
        if source == self.value("data.source") and not self._validating:
            self._validate()

    def _folder_verdict(self, source: str) -> str | None:
        """The folder problem ('' none) or None while the off-thread check is still running."""
        if source not in self._folder_verdicts and source not in self._checking:
            self._checking.add(source)
            workers.submit(folder_check_task, source, owner=self,
                           on_result=lambda problem: self._folder_checked(source, problem),
                           on_error=lambda message: self._folder_checked(source, message))
        return self._folder_verdicts.get(source)

    def _validate(self) -> None:
        self._validating = True
        try:
            self._check_fields()
        finally:
            self._validating = False
        self.validated.emit()

    def _check_fields(self) -> None:
        try:
            ExperimentConfig.from_dict(self._data)
            errors = []
        except ConfigError as exc:
            errors = exc.errors
        self.field_errors, self.general_errors = {}, []
        for sentence in dict.fromkeys(friendly_error(e, self._data) for e in errors):
            path = error_field(sentence)
            if path is None:
                self.general_errors.append(sentence)
            else:
                self.field_errors.setdefault(path, []).append(sentence)
        self.pending = ""
        source = self._data["data"]["source"]
        if "data.source" not in self.field_errors and needs_folder_check(source):
            verdict = self._folder_verdict(source)
            if verdict is None:
                self.pending = f"checking the data folder {source.partition(':')[2]}…"
            elif verdict:
                self.field_errors["data.source"] = [verdict]
