"""Encoders (``backbones``, ``vit``) and the projection heads the methods share (``heads``)."""

from .backbones import BACKBONE_NAMES, TinyCNN, backbone_family, build_backbone, feature_maps
from .heads import DINOHead, Prototypes, WeightNormLinear, mlp_head
from .vit import ViTBackbone, vit_patch_size

__all__ = [
    "BACKBONE_NAMES", "TinyCNN", "ViTBackbone", "DINOHead", "Prototypes", "WeightNormLinear",
    "backbone_family", "build_backbone", "feature_maps", "mlp_head", "vit_patch_size",
]
