"""Export a run's encoder (normalisation + backbone, optionally + projector) and load exports.

This package's entry point; its parts: ``module`` (the exported module and its metadata),
``formats`` (writers, safe recognition and loaders) and ``card`` (model card and README).

``export_encoder`` writes ``<run>/export/<name>/``: ``encoder.safetensors`` (weights + metadata
header), ``encoder.pt2`` (a ``torch.export`` program: the recommended format),
``encoder.torchscript.pt`` (traced; TorchScript is deprecated in current torch, which the model
card records), ``encoder.onnx`` (verified in onnxruntime), ``backbone.torchvision.safetensors``
(ResNet backbones only: a plain torchvision state dict), a ``.sha256`` beside each,
``model_card.json`` and ``README.md`` (how to load each file). Each file is written under a temp
name, reloaded from disk with :func:`load_encoder` and compared with the in-memory encoder on a
probe batch; only a file whose features match (max abs difference <= ``atol``) is
``os.replace``d onto its final name (mode 0666 less the umask, like any new file), otherwise a
CheckpointError names it and the difference.

``load_encoder(path)`` returns a module mapping images (N, 3, H, W) in [0, 1] to features (N, F),
from an export folder (its safetensors file is preferred) or one of the files; see
:mod:`backend.export.formats` for what is checked and what runs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import nn

from .. import faults
from ..checkpoint import TEMP_MARK, file_sha256
from ..errors import CheckpointError, ConfigError, WriteError, write_error
from ..reporter import as_reporter
from .formats import (FILE_NAMES, FORMATS, LOADERS, WRITERS, onnx_unavailable_reason, recorded_hashes,
                      sidecar_path, sniff, verify_sidecar)
from .torchvision_sd import unavailable_reason as torchvision_unavailable_reason
from .module import ExportedEncoder, from_method

__all__ = ["FORMATS", "ExportedEncoder", "export_encoder", "load_encoder", "default_export_name"]

EXPORT_DIR = "export"
PROBE_BATCH = 3          # not the traced batch size (2), so a baked-in batch size is caught
PROBE_SEED = 0
NO_HALF_FILE = "nothing was left half-written (an earlier export of that name is kept); free some space and export again"


def file_mode() -> int:
    """The mode a newly created regular file gets here: 0o666 less the process umask."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def _write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f"{path.name}{TEMP_MARK}{os.getpid()}")
    try:
        if faults.disk_full("export"):
            tmp.write_text(text[:len(text) // 2], encoding="utf-8")
            raise faults.enospc()
        tmp.write_text(text, encoding="utf-8")
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    except OSError as exc:
        raise write_error(path, exc, NO_HALF_FILE) from None
    finally:
        if tmp.exists():
            tmp.unlink()


def probe_batch(image_size: int) -> torch.Tensor:
    """The fixed verification batch: PROBE_BATCH uniform random images in [0, 1]."""
    g = torch.Generator().manual_seed(PROBE_SEED)
    return torch.rand(PROBE_BATCH, 3, image_size, image_size, generator=g)


def default_export_name(checkpoint: Path, epoch: int | None, include_projector: bool) -> str:
    """``epoch-NNNN`` (+ ``-projector``; + the checkpoint's stem when it is not last.pt or that epoch)."""
    name = f"epoch-{epoch:04d}" if epoch is not None else checkpoint.stem
    if checkpoint.stem not in ("last", name):
        name += f"-{checkpoint.stem}"
    return name + ("-projector" if include_projector else "")


@torch.no_grad()
def _verify(path: Path, reference: torch.Tensor, probe: torch.Tensor, final_name: str, atol: float) -> float:
    """Max abs difference between the reloaded file's features and ``reference``; raises if > atol.
    ONNX files are run in onnxruntime (export requires it)."""
    how = "reloaded from disk and run in onnxruntime" if path.suffix == ".onnx" else "reloaded from disk"
    loaded = load_encoder(path, verify_hash=False)
    out = loaded(probe)
    if tuple(out.shape) != tuple(reference.shape):
        raise CheckpointError(f"{final_name} was not written: {how} it gives features of shape "
                              f"{tuple(out.shape)} instead of {tuple(reference.shape)}")
    diff = (out.float() - reference).abs().max().item() if out.numel() else 0.0
    if not (diff <= atol):  # also catches NaN
        raise CheckpointError(f"{final_name} was not written: {how} it does not reproduce the "
                              f"encoder (max abs difference {diff:.3g} > {atol:g} on the probe batch)")
    return float(diff)


def _commit(tmp: Path, final: Path) -> str:
    """Move a verified temp file onto its final name with its ``.sha256`` (old and new hash listed
    during the swap, so a kill in between never makes the committed file look damaged)."""
    digest = file_sha256(tmp)
    sidecar = sidecar_path(final)
    old = recorded_hashes(final)[:1] if final.exists() else []
    _write_text_atomic(sidecar, "".join(f"{h}  {final.name}\n" for h in [digest, *old]))
    os.chmod(tmp, file_mode())   # writers may create 0600 temp files (mkstemp)
    os.replace(tmp, final)
    _write_text_atomic(sidecar, f"{digest}  {final.name}\n")
    return digest


def export_encoder(run_dir, out_dir=None, *, checkpoint=None, name: str | None = None,
                   formats=FORMATS, include_projector: bool = False, atol: float = 1e-4,
                   progress=None, cancelled=None, on_warning=None) -> list[Path]:
    """Export a run's encoder (see the module docstring) and return the written paths: the
    artifacts in ``formats`` order, then model_card.json and README.md.

    ``out_dir`` defaults to ``<run>/export/<name>`` with ``name`` from :func:`default_export_name`.
    ONNX is skipped (``on_warning`` is told why, and model_card.json records it) when onnx or
    onnxruntime is missing or the ONNX exporter fails; the torchvision state dict is skipped (the
    card says why) for backbones other than ResNets. Deprecation notes from torch (TorchScript)
    go to ``on_warning`` and the card. Raises ConfigError for an unknown format, CheckpointError for an unusable
    checkpoint or an artifact that fails verification (that file is not written)."""
    from ..checkpoint import load_checkpoint
    from ..restore import resolve_checkpoint, restore_method

    report = as_reporter(progress, cancelled)
    formats = tuple(dict.fromkeys(formats))
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise ConfigError(f"formats must be some of {', '.join(FORMATS)}, got {', '.join(map(str, formats)) or 'none'}")
    report(0.0, "loading the checkpoint")
    path = resolve_checkpoint(run_dir, checkpoint)
    state = load_checkpoint(path)
    state_info = {k: state.get(k) for k in ("epoch", "step") if isinstance(state.get(k), int)}
    state_info["sha256"] = file_sha256(path)
    del state
    method, cfg, path = restore_method(run_dir, path, device="cpu")
    encoder = from_method(method, cfg, include_projector)
    meta = encoder.metadata
    del method

    folder = Path(out_dir) if out_dir is not None else (
        Path(run_dir) / EXPORT_DIR / (name or default_export_name(path, state_info.get("epoch"), include_projector)))
    folder.mkdir(parents=True, exist_ok=True)
    probe = probe_batch(cfg.data.image_size)
    with torch.no_grad():
        reference = encoder(probe).float()
    example = probe[:2].clone()

    written, files, skipped = [], {}, {}
    warn = on_warning or (lambda message: None)
    for i, fmt in enumerate(formats):
        report(0.1 + 0.8 * i / len(formats), f"writing {FILE_NAMES[fmt]}")
        if fmt == "onnx" and onnx_unavailable_reason():
            skipped[fmt] = onnx_unavailable_reason()
            warn(f"ONNX export skipped: {skipped[fmt]}")
            continue
        if fmt == "torchvision" and torchvision_unavailable_reason(meta):
            skipped[fmt] = torchvision_unavailable_reason(meta)
            continue
        final = folder / FILE_NAMES[fmt]
        suffix = {"torchscript": ".pt", "torchvision": ".safetensors"}.get(fmt, f".{fmt}")
        tmp = folder / f"encoder{TEMP_MARK}{os.getpid()}{suffix}"
        try:
            if faults.disk_full("export"):
                tmp.write_bytes(b"\0" * 64)
                raise faults.enospc()
            notes = WRITERS[fmt](encoder, tmp, meta, example) or []
            report.check()
            diff = _verify(tmp, reference, probe, final.name, atol)
            digest = _commit(tmp, final)
        except (CheckpointError, WriteError):
            raise
        except OSError as exc:
            raise write_error(final, exc, NO_HALF_FILE) from None
        except Exception as exc:  # noqa: BLE001 - exporter failures: one sentence naming the file
            if fmt != "onnx":
                raise CheckpointError(f"could not write {final}: {type(exc).__name__}: "
                                      f"{str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ''}") from None
            skipped[fmt] = f"the ONNX exporter failed: {str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__}"
            warn(f"ONNX export skipped: {skipped[fmt]}")
            continue
        finally:
            if tmp.exists():
                tmp.unlink()
        files[fmt] = {"file": final.name, "sha256": digest, "bytes": final.stat().st_size,
                      "max_abs_diff": diff}
        if notes:
            files[fmt]["deprecated"] = notes
            warn(f"{final.name}: " + "; ".join(notes))
        written.append(final)

    report(0.92, "writing the model card")
    from .card import model_card, readme
    card = model_card(run_dir, cfg, meta, path, state_info, files, skipped, atol,
                      f"{PROBE_BATCH} uniform random images in [0, 1] (seed {PROBE_SEED})")
    card_path, readme_path = folder / "model_card.json", folder / "README.md"
    _write_text_atomic(card_path, json.dumps(card, indent=2) + "\n")
    _write_text_atomic(readme_path, readme(meta, files, card))
    written += [card_path, readme_path]
    report(1.0, f"exported {len(files)} file(s) to {folder}")
    return written


def _pick_in_folder(folder: Path) -> Path:
    for fmt in ("safetensors", "pt2", "torchscript", "onnx", "torchvision"):
        candidate = folder / FILE_NAMES[fmt]
        if candidate.is_file():
            return candidate
    raise CheckpointError(f"{folder} holds no exported encoder ({', '.join(FILE_NAMES.values())})")


def load_encoder(path, *, device="cpu", verify_hash: bool = True) -> nn.Module:
    """Load an export: images (N, 3, H, W) in [0, 1] -> features (N, F), in eval mode.

    ``path``: an export folder (its safetensors file is used), ``encoder.safetensors`` (backbone
    rebuilt from the metadata, weights read without pickle), ``encoder.pt2`` (``torch.export.load``
    after checking the archive needs no unrestricted unpickling; its program of torch operators
    runs when called), ``backbone.torchvision.safetensors`` (torchvision ResNet + the recorded
    normalisation), ``encoder.torchscript.pt``
    (``torch.jit.load``: runs the TorchScript program in the file, so only load trusted files) or
    ``encoder.onnx`` (needs onnxruntime). A ``.sha256`` beside the file is checked when
    ``verify_hash``. Anything else (a training checkpoint, a pickle, an image, a truncated file)
    raises a CheckpointError naming the file; nothing from it is executed. The module has a
    ``metadata`` dict (backbone, image_size, mean, std, feature_dim, ...)."""
    path = Path(path)
    if path.is_dir():
        path = _pick_in_folder(path)
    if not path.is_file():
        raise CheckpointError(f"exported encoder {path} does not exist")
    if verify_hash:
        verify_sidecar(path)   # before parsing anything: a damaged file is named as such
    fmt = sniff(path)
    return LOADERS[fmt](path, torch.device(device))
