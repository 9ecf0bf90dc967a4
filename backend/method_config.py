"""The ``[method]`` section, derived from the method registry's specs (torch-free).

``MethodConfig`` holds ``name``; each method gets a dataclass subclass (``method_config_class``)
adding the hyperparameters its ``MethodSpec`` declares, with their defaults, help and bounds as
field metadata, so ``cfg.method.<field>`` works, ``to_dict`` stays flat (``name``, then fields)
and validation reports every problem with its field path. Configs written before the registry
hold every method's fields: a field another method declares is accepted and dropped; a field no
method declares is an error naming the known ones.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .config_fields import coerce, spec
from .methods.catalog import field_owners, method_names, method_spec, method_specs

DEFAULT_METHOD = "simclr"


@dataclass
class MethodConfig:
    """The [method] section: the method's name (subclasses add the method's hyperparameters)."""

    name: str = spec(DEFAULT_METHOD, "Self-supervised method.")

    def __reduce__(self):  # the per-method classes are made at run time: pickle by (name, values)
        return method_config, (self.name, dataclasses.asdict(self))


_classes: dict = {}  # method name -> (spec, dataclass)


def method_config_class(name: str) -> type:
    """The dataclass of method ``name``'s section (``MethodConfig`` itself for an unknown name)."""
    method = method_spec(name)
    if method is None:
        return MethodConfig
    cached = _classes.get(name)
    if cached is not None and cached[0] is method:
        return cached[1]
    fields = [(key, p.type, dataclasses.field(default=p.default, metadata=p.metadata()))
              for key, p in method.params.items()]
    cls = dataclasses.make_dataclass(f"MethodConfig_{name}", fields, bases=(MethodConfig,),
                                     namespace={"__module__": __name__,
                                                "__doc__": f"[method] section of {method.label}."})
    _classes[name] = (method, cls)
    return cls


def method_config(name: str = DEFAULT_METHOD, values: dict | None = None) -> MethodConfig:
    """The section of method ``name`` with its defaults, ``values`` (already checked) over them."""
    cls = method_config_class(name)
    known = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in (values or {}).items() if k in known and k != "name"}, name=name)


def build_method_section(data, prefix: str, errors: list) -> MethodConfig:
    """The method section from a dict, recording wrong types and unknown keys in ``errors``.
    An unknown method name is left for validation to report (the form shows it inline)."""
    if not isinstance(data, dict):
        errors.append(f"{prefix.rstrip('.')} must be a table/object, got {type(data).__name__}")
        return method_config()
    name = data.get("name", DEFAULT_METHOD)
    if not isinstance(name, str):
        errors.append(f"{prefix}name must be of type str, got {type(name).__name__} {name!r}")
        name = DEFAULT_METHOD
    method = method_spec(name)
    declared = method.params if method is not None else {}
    others = field_owners()
    values = {}
    for key, value in data.items():
        if key == "name":
            continue
        if key in declared:
            checked = coerce(value, declared[key].type, prefix + key, errors)
            if checked is not None:
                values[key] = checked
        elif key not in others:  # another method's hyperparameter (old configs hold all): dropped
            known = ", ".join(sorted(["name", *declared]))
            errors.append(f"{prefix}{key} is not a known field (known: {known})")
    return method_config(name, values)


def method_name_errors(name: str) -> list[str]:
    """The sentence for an unknown method name (empty when the registry knows it)."""
    if method_spec(name) is not None:
        return []
    return [f"method.name must be one of {', '.join(method_names())}, got {name!r}"]


def param_meta(field_name: str, method: str | None = None) -> dict | None:
    """Metadata of hyperparameter ``field_name`` as ``method`` declares it (or as the first
    method declaring it does, when ``method`` is None or does not declare it)."""
    specs = method_specs()
    order = ([specs[method]] if method in specs else []) + list(specs.values())
    for candidate in order:
        if field_name in candidate.params:
            return candidate.params[field_name].metadata()
    return None


def applies_to(path: str) -> list[str]:
    """The methods a field is restricted to: those declaring ``method.<field>`` or listing
    ``path`` in their spec's ``reads`` (empty for fields every method uses)."""
    section, _, leaf = path.partition(".")
    specs = method_specs()
    if section == "method":
        return [] if leaf == "name" else [n for n, s in specs.items() if leaf in s.params]
    return [n for n, s in specs.items() if path in s.reads]


def all_method_defaults(first: str | None = None) -> dict:
    """Every hyperparameter of every method with a default (``first``'s own defaults win): the
    full method section an editor keeps while the method is switched."""
    specs = method_specs()
    merged: dict = {}
    for candidate in ([specs[first]] if first in specs else []) + list(specs.values()):
        for key, default in candidate.defaults().items():
            merged.setdefault(key, default)
    return merged
