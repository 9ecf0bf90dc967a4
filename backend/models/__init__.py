"""Encoders (``backbones``, ``vit``, ``external``) and the projection heads the methods share (``heads``)."""

from .backbones import (BACKBONE_NAMES, TinyCNN, backbone_family, build_backbone, check_backbone_name,
                        feature_maps, is_vit_backbone, last_attention)
from .heads import DINOHead, Prototypes, WeightNormLinear, mlp_head
from .vit import ViTBackbone, vit_patch_size

__all__ = [
    "BACKBONE_NAMES", "TinyCNN", "ViTBackbone", "DINOHead", "Prototypes", "WeightNormLinear",
    "backbone_family", "build_backbone", "check_backbone_name", "feature_maps", "is_vit_backbone",
    "last_attention", "mlp_head", "vit_patch_size",
]
