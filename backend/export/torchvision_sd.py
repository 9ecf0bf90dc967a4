"""A plain torchvision state dict of a ResNet backbone (``backbone.torchvision.safetensors``).

The keys are torchvision's own (``conv1.weight``, ``layer1.0.bn1.running_mean``, ...), so
``torchvision.models.resnet18()`` (34, 50) loads the file once it has the same shape as the
trained backbone: ``fc`` is an Identity (the file has no ``fc.*`` keys) and, for images up to
64 px, the CIFAR stem (3x3 stride-1 ``conv1``, no ``maxpool``). Normalisation is not inside:
the mean/std are in the file's metadata and the model card. See :func:`rebuild_snippet`.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from ..errors import CheckpointError
from .module import Normalize, metadata_to_strings

TORCHVISION_TAG = "sslwb-torchvision-state-dict"
RESNETS = ("resnet18", "resnet34", "resnet50")


def unavailable_reason(meta: dict) -> str | None:
    """None when the backbone is a torchvision ResNet, else why this format does not apply."""
    if meta.get("backbone") not in RESNETS:
        return f"only for torchvision ResNet backbones ({', '.join(RESNETS)}), not {meta.get('backbone')}"
    if meta.get("include_projector"):
        return "the projector is not part of a torchvision model: export without it for this file"
    return None


def cifar_stem(meta: dict) -> bool:
    """Whether the backbone has the CIFAR stem (images up to 64 px)."""
    from ..models.backbones import CIFAR_STEM_MAX_SIZE
    return int(meta["image_size"]) <= CIFAR_STEM_MAX_SIZE


def rebuild_snippet(meta: dict) -> str:
    """Python that builds ``m`` and loads the file into it (strict), with torch + torchvision only."""
    name = meta["backbone"]
    stem = ("m.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)  # CIFAR stem (3x3, stride 1)\n"
            "m.maxpool = nn.Identity()\n") if cifar_stem(meta) else ""
    return (f"from safetensors.torch import load_file\n"
            f"from torch import nn\n"
            f"from torchvision.models import {name}\n"
            f"sd = load_file(\"backbone.torchvision.safetensors\")\n"
            f"m = {name}()\n{stem}"
            f"m.fc = nn.Identity()  # the file has no fc.* keys: the backbone ends at the pooled features\n"
            f"m.load_state_dict(sd)\n"
            f"m.eval()\n")


def how_to_load(meta: dict) -> str:
    """One paragraph for the model card."""
    name = meta["backbone"]
    text = (f"torchvision.models.{name}() state dict with torchvision's own keys. The file has no fc.* "
            f"keys: set m.fc = nn.Identity() and load_state_dict(sd) (strict), or keep the classifier "
            f"with load_state_dict(sd, strict=False) (fc.weight/fc.bias are then reported missing and "
            f"stay untrained).")
    if cifar_stem(meta):
        text += (" The backbone uses the CIFAR stem: before loading set m.conv1 = nn.Conv2d(3, 64, 3, 1, 1, "
                 "bias=False) (conv1.weight is 64x3x3x3, not 64x3x7x7) and m.maxpool = nn.Identity().")
    return text + (f" Normalise the input first: (x - mean) / std with mean {meta['mean']}, std {meta['std']} "
                   f"(per RGB channel, x in [0, 1]).")


def write_torchvision(module: nn.Module, path: Path, meta: dict, example: torch.Tensor) -> list[str]:
    """The backbone's state dict under torchvision's keys, with our metadata (tag TORCHVISION_TAG)."""
    reason = unavailable_reason(meta)
    if reason:
        raise ValueError(reason)
    state = {k: v.detach().cpu().contiguous().clone() for k, v in module.backbone.state_dict().items()}
    save_file(state, str(path), metadata=metadata_to_strings({**meta, "format": TORCHVISION_TAG}))
    return []


class TorchvisionEncoder(nn.Module):
    """Normalize + a torchvision ResNet rebuilt as the card says, with the file's weights."""

    def __init__(self, model: nn.Module, meta: dict):
        super().__init__()
        self.normalize = Normalize(meta["mean"], meta["std"])
        self.model = model
        self.metadata = meta

    def forward(self, x):
        return self.model(self.normalize(x))


def build_model(meta: dict) -> nn.Module:
    """The torchvision ResNet of :func:`rebuild_snippet` (weights not loaded)."""
    import torchvision

    if meta.get("backbone") not in RESNETS:
        raise ValueError(f"unknown torchvision backbone {meta.get('backbone')!r}")
    with torch.random.fork_rng(devices=[]):
        m = getattr(torchvision.models, meta["backbone"])()
        if cifar_stem(meta):
            m.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
            m.maxpool = nn.Identity()
    m.fc = nn.Identity()
    return m


def load_torchvision(path: Path, state: dict, meta: dict, device) -> nn.Module:
    """A TorchvisionEncoder from a checked file's tensors and metadata."""
    try:
        model = build_model(meta)
    except Exception as exc:  # noqa: BLE001 - bad metadata: one sentence naming the file
        raise CheckpointError(f"{path} describes a backbone that cannot be built: {exc}") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{path} does not fit a torchvision {meta['backbone']}: "
                              f"{str(exc).splitlines()[0][:200]}") from None
    return TorchvisionEncoder(model, meta).to(device).eval()
