"""``torch.export`` programs (``encoder.pt2``): write, check the archive, load.

The recommended format: TorchScript is deprecated in current torch, ``torch.export`` is its
replacement. The program is exported with a dynamic batch dimension and saved with
``torch.export.save`` (our metadata as an extra file). ``torch.export.load`` may unpickle
parts of an archive (legacy weight files, pickled weights, custom objects, and, as a fallback,
the sample inputs), so :func:`check_archive` first refuses every archive that would need that:
each ``.pt`` member must load with ``torch.load(weights_only=True)``, and no weight or constant
may be marked as pickled or be a custom/opaque object. What remains is JSON (the graph of torch
operators, which runs when the program is called: load only files you trust) and raw tensor bytes.
"""

from __future__ import annotations

import io
import json
import warnings
import zipfile
from pathlib import Path

import torch
from torch import nn

from ..errors import CheckpointError

EXTRA = "sslwb.json"
MAX_BATCH = 65536


def is_pt2_archive(names: list[str]) -> bool:
    """Whether zip member ``names`` look like a torch.export (PT2) archive."""
    return any(n.endswith("archive_format") for n in names) and any("/models/" in n or n.startswith("models/")
                                                                    for n in names)


def write_pt2(module: nn.Module, path: Path, meta: dict, example: torch.Tensor) -> list[str]:
    """torch.export the module (batch dimension dynamic) and save it with our metadata."""
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        program = torch.export.export(module, (example,), dynamic_shapes={"x": {0: batch}})
        torch.export.save(program, str(path), extra_files={EXTRA: json.dumps(meta)})
    return sorted({str(w.message).splitlines()[0][:200] for w in caught
                   if issubclass(w.category, (FutureWarning, DeprecationWarning))})


def _config_entries(zf: zipfile.ZipFile, names: list[str], suffix: str) -> dict:
    entries = {}
    for name in names:
        if name.endswith(suffix):
            try:
                entries.update(json.loads(zf.read(name).decode("utf-8")).get("config", {}))
            except (ValueError, UnicodeDecodeError, AttributeError):
                raise ValueError(f"{Path(name).name} is not valid JSON") from None
    return entries


def check_archive(path: Path) -> None:
    """CheckpointError naming ``path`` unless loading it needs no unrestricted unpickling (see module)."""
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            weights = _config_entries(zf, names, "_weights_config.json")
            constants = _config_entries(zf, names, "_constants_config.json")
            pickled = [k for k, v in {**weights, **constants}.items() if not isinstance(v, dict) or v.get("use_pickle")]
            objects = [k for k, v in constants.items()
                       if isinstance(v, dict) and not str(v.get("path_name", "")).startswith("tensor_")]
            if pickled or objects:
                raise CheckpointError(f"{path} stores pickled objects ({', '.join((pickled + objects)[:3])}); "
                                      f"it was refused without loading it")
            for name in names:
                if name.endswith(".pt"):
                    try:
                        torch.load(io.BytesIO(zf.read(name)), weights_only=True)
                    except Exception:  # noqa: BLE001 - any failure: not plain tensors
                        raise CheckpointError(f"{path} holds {Path(name).name}, which is not plain tensors "
                                              f"(a pickle); it was refused without loading it") from None
    except CheckpointError:
        raise
    except (zipfile.BadZipFile, ValueError, OSError, KeyError) as exc:
        raise CheckpointError(f"{path} is truncated or damaged: {exc}") from None


class ProgramEncoder(nn.Module):
    """A loaded ``torch.export`` program with its metadata (already in inference form)."""

    def __init__(self, module, metadata: dict):
        super().__init__()
        self.module = module
        self.metadata = metadata

    def train(self, mode: bool = True):
        """Exported programs are fixed in the mode they were exported in (eval): a no-op."""
        self.training = False
        return self

    def forward(self, x):
        return self.module(x)


def load_pt2(path: Path, device) -> nn.Module:
    """An ``encoder.pt2`` as a module, after :func:`check_archive`."""
    check_archive(path)
    extra = {EXTRA: ""}
    try:
        program = torch.export.load(str(path), extra_files=extra)
        module = program.module()
    except Exception as exc:  # noqa: BLE001 - one sentence naming the file
        raise CheckpointError(f"{path} is not a loadable torch.export program: "
                              f"{str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__}") from None
    try:
        meta = json.loads(extra[EXTRA] or "{}")
    except ValueError:
        meta = {}
    if torch.device(device).type != "cpu":
        module = module.to(device)
    return ProgramEncoder(module, meta)
