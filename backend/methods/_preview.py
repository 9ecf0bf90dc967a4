"""What a method's network receives, for the GUI's augmentation preview.

A method module may define ``preview_inputs(views, cfg, generator) -> [(caption, images[, tags])]``:
``views`` are the normalised views the trainer would pass to ``training_step``, ``generator`` is
the CPU generator the method would draw its pretext randomness from, ``images`` are (N, 3, H, W)
floats in [0, 1] for display and ``tags`` (optional) one short string per image (a permutation
index, a neighbour's position). The function must build its tensors with the ops the training
step uses, so the preview shows the training input. :func:`preview_inputs` looks the function up
by method name (the GUI must not import a method's module itself) and checks what it returns.

Torch is imported only when a preview is drawn (``backend.methods`` stays torch-free to import).
Private module (leading underscore): the method catalogue does not read it for a SPEC.
"""

from __future__ import annotations

import importlib
import sys

from .catalog import method_spec, module_of


def _module(name: str):
    """The module that defines method ``name`` (None when no such method is known)."""
    from . import load_methods

    module = module_of(name)
    if module is not None:
        return importlib.import_module(f"{__package__}.{module}")
    cls = load_methods().get(name)  # a method registered in-process
    return None if cls is None else sys.modules.get(cls.__module__)


def has_preview_inputs(name: str) -> bool:
    """Whether method ``name``'s module declares ``preview_inputs``."""
    module = _module(name)
    return module is not None and callable(getattr(module, "preview_inputs", None))


def preview_inputs(name: str, views, cfg, generator=None) -> list:
    """[(caption, images (N, 3, H, W) float in [0, 1], tags: one string per image or [])] that
    method ``name``'s network receives for ``views`` (normalised, as in training); [] when its
    module declares no ``preview_inputs``. An unknown name is a ValueError."""
    import torch

    if method_spec(name) is None:
        raise ValueError(f"unknown method {name!r}")
    module = _module(name)
    fn = getattr(module, "preview_inputs", None) if module is not None else None
    if not callable(fn):
        return []
    out = []
    for entry in fn(views, cfg, generator):
        caption, images, *rest = entry
        tags = [str(t) for t in rest[0]] if rest else []
        if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"{name}.preview_inputs: {caption!r} must be (N, 3, H, W) images, got "
                             f"{getattr(images, 'shape', type(images).__name__)}")
        if tags and len(tags) != images.shape[0]:
            raise ValueError(f"{name}.preview_inputs: {caption!r} has {len(tags)} tags for "
                             f"{images.shape[0]} images")
        out.append((str(caption), images.detach().float().clamp(0.0, 1.0).cpu(), tags))
    return out
