"""The exported encoder: normalisation + backbone (+ projector) as one module, and its metadata."""

from __future__ import annotations

import copy
import json

import torch
from torch import Tensor, nn

FORMAT_TAG = "sslwb-encoder"
FORMAT_VERSION = 1


class Normalize(nn.Module):
    """(x - mean) / std per channel, for images in [0, 1]; mean/std are buffers (exported)."""

    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, 3, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std


class ExportedEncoder(nn.Module):
    """Images (N, 3, S, S) in [0, 1] -> features (N, F): Normalize, the method's input adapter
    when it has one (colorization: the grey L-channel input its backbone trained on), backbone,
    optional projector.

    ``metadata`` (dict) describes it: backbone, image_size, mean, std, feature_dim,
    include_projector, method, and ``input`` (what the adapter feeds the backbone) when there is
    an adapter. The adapter holds no saved state: the state dict is the backbone's (+ projector's)."""

    def __init__(self, backbone: nn.Module, mean, std, projector: nn.Module | None = None,
                 metadata: dict | None = None, adapter: nn.Module | None = None):
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.adapter = adapter
        self.backbone = backbone
        self.projector = projector
        self.metadata = dict(metadata or {})

    @property
    def image_size(self) -> int:
        return int(self.metadata.get("image_size", 0))

    @property
    def feature_dim(self) -> int:
        return int(self.metadata.get("feature_dim", 0))

    def forward(self, x: Tensor) -> Tensor:
        x = self.normalize(x)
        if self.adapter is not None:
            x = self.adapter(x)
        features = self.backbone(x)
        if self.projector is not None:
            features = self.projector(features)
        return features


def encoder_metadata(cfg, feature_dim: int, include_projector: bool) -> dict:
    """Plain metadata of an export (also stored as strings in the safetensors header)."""
    return {"format": FORMAT_TAG, "format_version": FORMAT_VERSION, "backbone": cfg.model.backbone,
            "image_size": int(cfg.data.image_size), "mean": [float(v) for v in cfg.augment.mean],
            "std": [float(v) for v in cfg.augment.std], "feature_dim": int(feature_dim),
            "include_projector": bool(include_projector), "method": cfg.method.name,
            "config": cfg.to_dict()}


def metadata_to_strings(meta: dict) -> dict[str, str]:
    """safetensors metadata must be str -> str: numbers and lists as JSON."""
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in meta.items()}


def metadata_from_strings(meta: dict[str, str]) -> dict:
    out = {}
    for k, v in meta.items():
        try:
            out[k] = json.loads(v)
        except (TypeError, ValueError):
            out[k] = v
    return out


def from_method(method, cfg, include_projector: bool = False) -> ExportedEncoder:
    """An ExportedEncoder (eval mode, CPU, float32) holding copies of a method's parts."""
    from ..errors import ConfigError

    backbone = copy.deepcopy(method.backbone).cpu().float().eval()
    adapter = type(method).input_adapter(cfg)
    projector = None
    if include_projector:
        if not isinstance(getattr(method, "projector", None), nn.Module):
            raise ConfigError(f"method {cfg.method.name} has no projector to export; drop --include-projector")
        projector = copy.deepcopy(method.projector).cpu().float().eval()
    with torch.no_grad():
        probe = torch.zeros(2, 3, cfg.data.image_size, cfg.data.image_size)
        dim = int((projector or nn.Identity())(backbone(probe)).shape[1])
    meta = encoder_metadata(cfg, dim, include_projector)
    if adapter is not None:
        meta["input"] = input_description(adapter)
    return ExportedEncoder(backbone, cfg.augment.mean, cfg.augment.std, projector, meta, adapter).eval()


def input_description(adapter: nn.Module) -> str:
    """What an input adapter feeds the backbone, for the metadata and the model card: the first
    line of its class docstring."""
    doc = (type(adapter).__doc__ or type(adapter).__name__).strip().splitlines()[0]
    return f"{type(adapter).__name__}: {doc.strip()}"


def rebuild(meta: dict) -> ExportedEncoder:
    """An ExportedEncoder with the architecture ``meta`` describes (weights not loaded), built
    without touching the global RNG."""
    from ..config import ExperimentConfig
    from ..models import build_backbone
    from .card import export_vit_pool

    with torch.random.fork_rng(devices=[]):
        backbone, _ = build_backbone(str(meta["backbone"]), int(meta["image_size"]), vit_pool=export_vit_pool(meta))
        projector = adapter = None
        if meta.get("include_projector") or meta.get("input"):
            from ..methods import METHODS
            cfg = ExperimentConfig.from_dict(meta["config"])
            if meta.get("input"):      # exports made before adapters existed have none
                adapter = METHODS[cfg.method.name].input_adapter(cfg)
            if meta.get("include_projector"):
                projector = METHODS[cfg.method.name](cfg).projector
    return ExportedEncoder(backbone, meta["mean"], meta["std"], projector, meta, adapter)
