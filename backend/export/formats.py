"""Encoder file formats: write (safetensors, torch.export, TorchScript, ONNX, a torchvision state
dict), recognise, and load safely.

Loading never unpickles: safetensors files are checked (header length, JSON header, our metadata,
data extent) before ``safetensors.torch.load_file`` reads them; a ``torch.save`` pickle, a raw
pickle, an image or an unknown file is refused from its first bytes with a CheckpointError naming
it. TorchScript files are loaded with ``torch.jit.load``: that runs the TorchScript program stored
in the file (TorchScript's own interpreter: tensor code, no Python imports or calls), and its
constants come through TorchScript's restricted unpickler, which cannot construct arbitrary Python
objects. Load TorchScript files only from sources you trust; a ``.sha256`` beside the file is
checked first. ``torch.export`` programs (.pt2, the recommended format; see :mod:`.pt2`) are
checked to need no unrestricted unpickling before ``torch.export.load`` reads them. ONNX files run
in onnxruntime (or, without it, in onnx's slow reference evaluator). The torchvision state dict
(:mod:`.torchvision_sd`) is a safetensors file read like ours.
"""

from __future__ import annotations

import json
import re
import warnings
import zipfile
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ..checkpoint import file_sha256
from ..errors import CheckpointError
from .module import FORMAT_TAG, metadata_from_strings, metadata_to_strings, rebuild
from .pt2 import is_pt2_archive, load_pt2, write_pt2
from .torchvision_sd import TORCHVISION_TAG, load_torchvision, write_torchvision

FILE_NAMES = {"safetensors": "encoder.safetensors", "pt2": "encoder.pt2", "torchscript": "encoder.torchscript.pt",
              "onnx": "encoder.onnx", "torchvision": "backbone.torchvision.safetensors"}
RECOMMENDED = "pt2"
FORMATS = tuple(FILE_NAMES)
MAX_HEADER_BYTES = 100 * 1024 * 1024
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_EXTRA = "sslwb.json"


# ---- helpers ---------------------------------------------------------------------------------
def onnx_unavailable_reason() -> str | None:
    """None when ONNX export works here, else why not (one sentence with the fix)."""
    for package in ("onnx", "onnxruntime"):
        try:
            __import__(package)
        except ImportError:
            return (f"the {package} package is not installed (a dependency of SSL Workbench: "
                    f"pip install onnx onnxruntime)")
    return None


def sidecar_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def recorded_hashes(path: Path) -> list[str]:
    """SHA-256 hex digests listed in ``<file>.sha256`` (sha256sum format; empty when absent)."""
    try:
        text = sidecar_path(path).read_text()
    except OSError:
        return []
    return [tok for tok in text.split() if _HEX64.match(tok)]


def verify_sidecar(path: Path) -> None:
    """CheckpointError when ``<file>.sha256`` exists and lists no hash of the file's bytes."""
    hashes = recorded_hashes(path)
    if hashes and file_sha256(path) not in hashes:
        raise CheckpointError(f"{path} does not match its recorded hash ({sidecar_path(path).name}): "
                              f"the file was modified or damaged after export")


# ---- writers ---------------------------------------------------------------------------------
def write_safetensors(module: nn.Module, path: Path, meta: dict, example: torch.Tensor) -> None:
    state = {k: v.detach().cpu().contiguous().clone() for k, v in module.state_dict().items()}
    save_file(state, str(path), metadata=metadata_to_strings(meta))


def write_torchscript(module: nn.Module, path: Path, meta: dict, example: torch.Tensor) -> list[str]:
    """Trace and save; returns torch's deprecation notes (recorded in the model card, not hidden)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        traced = torch.jit.trace(module, example, check_trace=False)
        torch.jit.save(traced, str(path), _extra_files={_EXTRA: json.dumps(meta)})
    return sorted({str(w.message).splitlines()[0][:200] for w in caught
                   if issubclass(w.category, (FutureWarning, DeprecationWarning)) and "deprecat" in str(w.message)})


def write_onnx(module: nn.Module, path: Path, meta: dict, example: torch.Tensor) -> None:
    import onnx

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            import onnxscript  # noqa: F401 - the dynamo exporter needs it
            batch = torch.export.Dim("batch", min=1, max=65536)
            torch.onnx.export(module, (example,), str(path), dynamo=True, external_data=False,
                              input_names=["images"], output_names=["features"],
                              dynamic_shapes={"x": {0: batch}}, verbose=False)
        except ImportError:
            torch.onnx.export(module, (example,), str(path), dynamo=False, opset_version=17,
                              input_names=["images"], output_names=["features"],
                              dynamic_axes={"images": {0: "batch"}, "features": {0: "batch"}})
    model = onnx.load(str(path))
    entry = model.metadata_props.add()
    entry.key, entry.value = _EXTRA, json.dumps(meta)
    onnx.save(model, str(path))


WRITERS = {"safetensors": write_safetensors, "pt2": write_pt2, "torchscript": write_torchscript,
           "onnx": write_onnx, "torchvision": write_torchvision}


# ---- recognising files -----------------------------------------------------------------------
def sniff(path: Path) -> str:
    """'safetensors', 'pt2', 'torchscript' or 'onnx' from the file's bytes (and .onnx suffix); a
    CheckpointError naming the file for anything else. Reads only the first bytes / zip index."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(16)
    except OSError as exc:
        raise CheckpointError(f"cannot read {path}: {exc.strerror or exc}") from None
    if size == 0:
        raise CheckpointError(f"{path} is empty (0 bytes)")
    if head.startswith(b"\xff\xd8\xff") or head.startswith(b"\x89PNG") or head[:4] == b"GIF8":
        raise CheckpointError(f"{path} is an image, not an exported encoder")
    if head.startswith(b"PK"):
        try:
            with zipfile.ZipFile(path) as zf:
                names = zf.namelist()
        except Exception:  # noqa: BLE001 - BadZipFile, but also e.g. UnicodeDecodeError on damage
            raise CheckpointError(f"{path} is truncated or damaged (not a complete archive)") from None
        if any("/code/" in n or n.startswith("code/") for n in names):
            return "torchscript"
        if is_pt2_archive(names):
            return "pt2"
        if any(n.endswith("data.pkl") for n in names):
            raise CheckpointError(f"{path} is a torch.save (pickle) file such as a training checkpoint, "
                                  f"not an exported encoder; it was not loaded (export it with sslwb export)")
        raise CheckpointError(f"{path} is a zip archive but not an exported encoder")
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        raise CheckpointError(f"{path} is a Python pickle; it was refused without loading it")
    if path.suffix.lower() == ".onnx":
        return "onnx"
    if path.suffix.lower() == ".safetensors" or head[8:9] == b"{":
        return "safetensors"
    raise CheckpointError(f"{path} is not an exported encoder (expected safetensors, torch.export, TorchScript or ONNX)")


def read_safetensors_header(path: Path) -> tuple[dict, dict]:
    """(raw header, our metadata) of a safetensors export, checked before any tensor is read."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        first = fh.read(8)
        if len(first) < 8:
            raise CheckpointError(f"{path} is truncated: too short for a safetensors header")
        n = int.from_bytes(first, "little")
        if n < 2 or n > min(MAX_HEADER_BYTES, size - 8):
            raise CheckpointError(f"{path} is not a usable safetensors file: its header length ({n} bytes) "
                                  f"is impossible for a file of {size} bytes (truncated or not safetensors)")
        raw = fh.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise CheckpointError(f"{path} is damaged: its safetensors header is not valid JSON") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path} is damaged: its safetensors header is not a JSON object")
    meta = header.get("__metadata__") or {}
    if not isinstance(meta, dict) or meta.get("format") not in (FORMAT_TAG, TORCHVISION_TAG):
        raise CheckpointError(f"{path} is a safetensors file but not an SSL Workbench encoder export "
                              f"(no '{FORMAT_TAG}' metadata)")
    try:
        end = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"), default=0)
    except (TypeError, KeyError, ValueError, IndexError):
        raise CheckpointError(f"{path} is damaged: its safetensors header lists malformed tensors") from None
    if end > size - 8 - n:
        raise CheckpointError(f"{path} is truncated: the header describes {end} bytes of tensors but "
                              f"only {size - 8 - n} follow")
    parsed = metadata_from_strings(meta)
    for key in ("backbone", "image_size", "mean", "std"):
        if key not in parsed:
            raise CheckpointError(f"{path} is damaged: its metadata has no '{key}'")
    return header, parsed


# ---- loaders ---------------------------------------------------------------------------------
class ScriptedEncoder(nn.Module):
    """A loaded TorchScript export with its metadata."""

    def __init__(self, module, metadata: dict):
        super().__init__()
        self.module = module
        self.metadata = metadata

    def forward(self, x):
        return self.module(x)


class OnnxEncoder(nn.Module):
    """Runs an ONNX export (onnxruntime, or onnx's reference evaluator) as a torch module."""

    def __init__(self, run, metadata: dict):
        super().__init__()
        self._run = run
        self.metadata = metadata

    def forward(self, x):
        out = self._run(x.detach().cpu().float().numpy())
        return torch.from_numpy(np.asarray(out, dtype=np.float32)).to(x.device)


def load_safetensors(path: Path, device) -> nn.Module:
    _, meta = read_safetensors_header(path)
    try:
        state = load_file(str(path))
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types
        raise CheckpointError(f"{path} is truncated or damaged: {str(exc).splitlines()[0][:160]}") from None
    if meta.get("format") == TORCHVISION_TAG:
        return load_torchvision(path, state, meta, device)
    try:
        module = rebuild(meta)
    except Exception as exc:  # noqa: BLE001 - bad metadata: one sentence naming the file
        raise CheckpointError(f"{path} describes an encoder that cannot be built: {exc}") from None
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{path} does not fit a {meta['backbone']} encoder: "
                              f"{str(exc).splitlines()[0][:200]}") from None
    return module.to(device).eval()


def load_torchscript(path: Path, device) -> nn.Module:
    extra = {_EXTRA: ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        try:
            module = torch.jit.load(str(path), map_location=device, _extra_files=extra)
        except Exception as exc:  # noqa: BLE001 - one sentence naming the file
            raise CheckpointError(f"{path} is not a loadable TorchScript file: "
                                  f"{str(exc).strip().splitlines()[0][:160]}") from None
    try:
        meta = json.loads(extra[_EXTRA] or "{}")
    except ValueError:
        meta = {}
    return ScriptedEncoder(module, meta).eval()


def load_onnx(path: Path, device) -> nn.Module:
    try:
        import onnxruntime as ort
    except ImportError:
        ort = None
    try:
        if ort is not None:
            session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            name = session.get_inputs()[0].name
            meta_text = session.get_modelmeta().custom_metadata_map.get(_EXTRA, "{}")
            return OnnxEncoder(lambda a: session.run(None, {name: a})[0], json.loads(meta_text)).eval()
        try:
            import onnx
            from onnx.reference import ReferenceEvaluator
        except ImportError:
            raise CheckpointError(f"cannot run {path}: ONNX files need onnxruntime "
                                  f"(pip install onnxruntime)") from None
        model = onnx.load(str(path))
        meta_text = next((p.value for p in model.metadata_props if p.key == _EXTRA), "{}")
        evaluator = ReferenceEvaluator(model)
        name = model.graph.input[0].name
        return OnnxEncoder(lambda a: evaluator.run(None, {name: a})[0], json.loads(meta_text)).eval()
    except CheckpointError:
        raise
    except Exception as exc:  # noqa: BLE001 - onnx/onnxruntime raise many types
        raise CheckpointError(f"{path} is not a loadable ONNX file: {str(exc).strip().splitlines()[0][:160]}") from None


LOADERS = {"safetensors": load_safetensors, "pt2": load_pt2, "torchscript": load_torchscript, "onnx": load_onnx}
