"""Encoders: images (N, 3, H, W), already normalised, -> features (N, F).

``build_backbone(name, image_size)`` is the one entry point; it returns the module and F.

- ``tiny_cnn``: four conv-BN-ReLU stages (32-64-128-256 channels, strides 2-2-2-1) and global
  average pooling, F = 256. Made for the quick preset on 2 CPU cores (a 32x32 training step on a
  batch of 256 takes a few hundredths of a second); its last feature map is 4x4 at 32x32.
- ``resnet18`` / ``resnet34`` / ``resnet50``: torchvision ResNets (random init), F = 512 / 512 /
  2048, ``fc`` replaced by Identity. For images up to 64 px the CIFAR stem is used (conv1 3x3
  stride 1 padding 1, no max-pool), as in SimCLR's CIFAR experiments; larger images keep the
  ImageNet stem (7x7 stride 2 + max-pool). The last BN of every residual block starts at gamma = 0
  (torchvision's ``zero_init_residual=True``, as in the SimSiam and MoCo v3 reference code), so
  each block starts as the identity.
- ``vit_tiny`` / ``vit_small``: see ``backend.models.vit`` (F = 192 / 384).
- ``torchvision:<model>`` / ``timm:<model>``: any torchvision classification model or timm model,
  random init; see ``backend.models.external`` for the rules (head, stem, ViT patch size).
"""

from __future__ import annotations

from torch import Tensor, nn
from torchvision.models import ResNet, resnet18, resnet34, resnet50

from ..errors import ConfigError
from .external import (build_external, check_external_name, external_family,
                       external_feature_maps, is_external)
from .vit import VIT_CONFIGS, ViTBackbone, build_vit

BACKBONE_NAMES = ("tiny_cnn", "resnet18", "resnet34", "resnet50", "vit_tiny", "vit_small")

_RESNETS = {"resnet18": (resnet18, 512), "resnet34": (resnet34, 512), "resnet50": (resnet50, 2048)}
CIFAR_STEM_MAX_SIZE = 64  # images up to this side length get the CIFAR ResNet stem


def check_backbone_name(name: str) -> None:
    """ConfigError naming model.backbone unless ``name`` is a built-in or a known external model.

    Cheap (nothing is built): for config validation. A ``timm:`` name needs timm installed."""
    if is_external(name):
        check_external_name(name)
    elif name not in BACKBONE_NAMES:
        raise ConfigError(f"model.backbone must be one of {', '.join(BACKBONE_NAMES)}, "
                          f"or torchvision:<model> / timm:<model>, got {name!r}")



def backbone_family(name: str) -> str:
    """'vit' for ViT backbones (built-in or external), 'cnn' for the others (ConfigError for an
    unknown name)."""
    check_backbone_name(name)
    if is_external(name):
        return external_family(name)
    return "vit" if name in VIT_CONFIGS else "cnn"


class TinyCNN(nn.Module):
    """A small CPU-friendly conv net: 4 conv3x3-BN-ReLU stages, global average pool -> (N, 256)."""

    def __init__(self, widths=(32, 64, 128, 256), strides=(2, 2, 2, 1)):
        super().__init__()
        layers, in_ch = [], 3
        for width, stride in zip(widths, strides):
            layers += [nn.Conv2d(in_ch, width, 3, stride, 1, bias=False), nn.BatchNorm2d(width),
                       nn.ReLU(inplace=True)]
            in_ch = width
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.num_features = in_ch
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def feature_maps(self, x: Tensor) -> Tensor:
        """Last conv feature map (N, 256, H/8, W/8)."""
        return self.features(x)

    def forward(self, x: Tensor) -> Tensor:
        """Pooled features (N, 256)."""
        return self.pool(self.features(x)).flatten(1)


def _build_resnet(name: str, image_size: int) -> tuple[nn.Module, int]:
    factory, dim = _RESNETS[name]
    model = factory(weights=None, zero_init_residual=True)
    if image_size <= CIFAR_STEM_MAX_SIZE:
        model.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
        model.maxpool = nn.Identity()
    model.fc = nn.Identity()
    model.num_features = dim
    return model, dim


def build_backbone(name: str, image_size: int, *, drop_path_rate: float = 0.0,
                   vit_pool: str = "cls") -> tuple[nn.Module, int]:
    """Build encoder ``name`` for ``image_size`` px inputs: (module, feature dimension F).

    The module maps normalised float images (N, 3, H, W) to features (N, F); it accepts
    channels_last inputs and runs under ``torch.autocast``. Unknown names raise ConfigError
    naming ``model.backbone``; a ViT image size without a fitting patch size raises ConfigError
    naming ``data.image_size``. External names (``torchvision:<model>``, ``timm:<model>``) are
    built by ``backend.models.external.build_external``. ``drop_path_rate``: stochastic depth of the
    built-in ViTs (other backbones ignore it). ``vit_pool``: the built-in ViTs' features, the CLS
    token (``"cls"``) or the mean patch token (``"mean"``); ConfigError naming ``model.vit_pool``
    for ``"mean"`` on any other backbone.
    """
    check_backbone_name(name)
    if vit_pool != "cls" and name not in VIT_CONFIGS:
        raise ConfigError(f"model.vit_pool = {vit_pool!r} needs a built-in ViT backbone "
                          f"({', '.join(VIT_CONFIGS)}), got model.backbone = {name!r}")
    if is_external(name):
        return build_external(name, image_size)
    if name == "tiny_cnn":
        model = TinyCNN()
        return model, model.num_features
    if name in _RESNETS:
        return _build_resnet(name, image_size)
    model = build_vit(name, image_size, drop_path_rate=drop_path_rate, pool=vit_pool)
    return model, model.hidden_dim


def unwrap_backbone(module: nn.Module) -> nn.Module:
    """The module under torch.compile / DistributedDataParallel wrappers."""
    while True:
        inner = getattr(module, "_orig_mod", None)
        if not isinstance(inner, nn.Module):
            inner = getattr(module, "module", None)
        if not isinstance(inner, nn.Module):
            return module
        module = inner


def feature_maps(backbone: nn.Module, x: Tensor) -> Tensor:
    """Last conv feature map (N, C, h, w) of a CNN backbone (before global pooling).

    Raises ValueError for a ViT (use ``ViTBackbone.last_attention`` there) or an unknown module.
    """
    model = unwrap_backbone(backbone)
    if isinstance(model, TinyCNN):
        return model.feature_maps(x)
    if isinstance(model, ResNet):
        x = model.maxpool(model.relu(model.bn1(model.conv1(x))))
        return model.layer4(model.layer3(model.layer2(model.layer1(x))))
    if isinstance(model, ViTBackbone) or getattr(model, "family", "") == "vit":
        raise ValueError("feature_maps needs a CNN backbone; a ViT has no conv feature map "
                         "(use ViTBackbone.last_attention for its attention maps)")
    try:
        return external_feature_maps(model, x)
    except ValueError:
        raise ValueError(f"feature_maps does not know backbone type {type(model).__name__}; "
                         f"expected one built by build_backbone with a CNN name") from None


def is_vit_backbone(backbone: nn.Module) -> bool:
    """True when ``backbone`` (possibly compiled / DDP-wrapped) is a ViT with ``last_attention``."""
    model = unwrap_backbone(backbone)
    return isinstance(model, ViTBackbone) or getattr(model, "family", "") == "vit"


def last_attention(backbone: nn.Module, x: Tensor) -> Tensor:
    """Last block's CLS-to-patch attention (N, heads, h, w) of a ViT backbone, built-in or external.

    Raises ValueError for a CNN (use ``feature_maps`` there)."""
    if not is_vit_backbone(backbone):
        raise ValueError(f"last_attention needs a ViT backbone, got {type(unwrap_backbone(backbone)).__name__}")
    return unwrap_backbone(backbone).last_attention(x)
