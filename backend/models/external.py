"""Backbones from other libraries: ``torchvision:<name>`` and ``timm:<name>``, random init only.

``torchvision:<name>``: any classification model of ``torchvision.models`` (``list_models``), built
with ``get_model(name, weights=None)``. ``timm:<name>``: any ``timm`` model (an optional extra:
``pip install 'ssl-workbench[timm]'``), built with ``create_model(name, pretrained=False,
num_classes=0)``. Nothing is ever downloaded.

Rules (the same for training, inspection and export, so ``build_external(name, size)`` rebuilds
an exported encoder from its backbone string alone):

- The classifier is removed: torchvision's head (``fc``, ``heads``, ``head`` or ``classifier``;
  for a Sequential its last Linear, or its last 1x1 Conv2d for SqueezeNet) becomes Identity;
  timm's ``num_classes=0`` does the same. The feature dimension F is measured by a forward pass of
  two zero images at the training size (eval mode, no grad, CPU), so it is right for any model.
- ResNet-family models (torchvision ``ResNet``: resnet*, resnext*, wide_resnet*; timm ``ResNet``
  with a single-conv stem) get the CIFAR stem for images up to 64 px (conv1 3x3 stride 1, no
  max-pool), as the built-in resnets do; torchvision ResNets also start with
  ``zero_init_residual=True`` like the built-ins, so ``torchvision:resnet18`` is the built-in
  ``resnet18`` (same parameter names too).
- ViT-like models (torchvision ``VisionTransformer``; timm models with ``patch_embed``, ``blocks``
  and a class token) form the 'vit' family and offer ``last_attention``. A torchvision ViT is held
  by a ``ViTBackbone`` (``TorchvisionViT``), so it accepts any input size divisible by its patch
  (position embeddings resized, DINO's local crops) and the attention code needs no change; its
  patch size is the name's (``vit_b_16`` -> 16), and ``image_size`` must be divisible by it.
  A timm ViT is built with ``img_size=image_size`` and ``dynamic_img_size=True``; its patch is the
  name's when that gives a grid of at least 7 patches a side, else ``vit_patch_size(image_size)``
  (``timm:vit_tiny_patch16_224`` at 32 px -> patch 4, an 8x8 grid, like the built-in vit_tiny).
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from .vit import ViTBackbone, vit_patch_size

PREFIXES = ("torchvision", "timm")
TIMM_MISSING = ("model.backbone {name!r} needs the timm package: pip install 'ssl-workbench[timm]' "
                "(or pip install timm)")
CIFAR_STEM_MAX_SIZE = 64
_MIN_VIT_GRID = 7
_HEAD_ATTRS = ("fc", "heads", "head", "classifier")
_NO_AUX = ("googlenet", "inception_v3")       # their auxiliary classifiers change the output type


def is_external(name: str) -> bool:
    """True for names of the form ``torchvision:<model>`` or ``timm:<model>``."""
    return isinstance(name, str) and name.split(":", 1)[0] in PREFIXES and ":" in name


def split_name(name: str) -> tuple[str, str]:
    """``'timm:resnet18'`` -> ``('timm', 'resnet18')``; ConfigError naming model.backbone if malformed."""
    prefix, _, model = str(name).partition(":")
    if prefix not in PREFIXES or not model.strip() or model != model.strip():
        raise ConfigError(f"model.backbone must look like torchvision:<model> or timm:<model>, got {name!r}")
    return prefix, model


def _timm():
    try:
        import timm
    except ImportError:
        return None
    return timm


def check_external_name(name: str) -> None:
    """Validate an external name without building it (cheap; for config validation).

    ConfigError naming model.backbone: malformed, unknown to the library, or timm not installed."""
    prefix, model = split_name(name)
    if prefix == "torchvision":
        import torchvision.models as tvm
        if model not in tvm.list_models(module=tvm):
            raise ConfigError(f"model.backbone {name!r}: torchvision has no classification model "
                              f"{model!r} (see torchvision.models.list_models())")
        return
    timm = _timm()
    if timm is None:
        raise ConfigError(TIMM_MISSING.format(name=name))
    if not timm.is_model(model):
        raise ConfigError(f"model.backbone {name!r}: timm has no model {model!r} "
                          f"(see timm.list_models())")


# ---- wrappers -------------------------------------------------------------------------------

class TorchvisionViT(ViTBackbone):
    """A ViTBackbone around a torchvision ``VisionTransformer`` built by ``get_model``."""

    def __init__(self, vit: nn.Module):
        nn.Module.__init__(self)
        vit.heads = nn.Identity()
        self.vit = vit
        self.image_size = int(vit.image_size)
        self.patch_size = int(vit.patch_size)
        self.grid_size = self.image_size // self.patch_size
        self.hidden_dim = int(vit.hidden_dim)
        self.num_heads = int(vit.encoder.layers[0].num_heads)
        self.num_features = self.hidden_dim
        self.drop_path_rates = [0.0] * len(vit.encoder.layers)  # no stochastic depth for these
        self.pool = "cls"  # torchvision's read-out: the CLS token


class TimmBackbone(nn.Module):
    """A timm model without classifier: images -> pooled features (N, F).

    ``family`` is 'vit' or 'cnn'. ViTs offer ``last_attention`` (as ``ViTBackbone`` does); CNNs
    offer ``feature_maps`` (timm's ``forward_features``, before pooling)."""

    def __init__(self, model: nn.Module, family: str):
        super().__init__()
        self.model = model
        self.family = family
        self.num_features = int(getattr(model, "num_features", 0) or 0)

    def forward(self, x: Tensor) -> Tensor:
        """Pooled pre-logits features (N, F)."""
        return self.model(x)

    def feature_maps(self, x: Tensor) -> Tensor:
        """Last feature map (N, C, h, w) of a CNN; ValueError for a ViT."""
        if self.family == "vit":
            raise ValueError("feature_maps needs a CNN backbone; use last_attention for a ViT")
        fm = self.model.forward_features(x)
        if fm.ndim != 4:
            raise ValueError(f"timm model {type(self.model).__name__} has no (N, C, h, w) feature map")
        return fm

    def last_attention(self, x: Tensor) -> Tensor:
        """Last block's CLS-to-patch attention, (N, heads, grid_h, grid_w), float32.

        The input of the last block's attention module is captured with a forward pre-hook; the
        attention probabilities are recomputed from its ``qkv`` projection (softmax over all
        tokens, as in the forward pass), the prefix tokens (CLS, registers) are dropped and each
        head's map is renormalised to sum to 1 over the patches, as ``ViTBackbone.last_attention``.
        """
        if self.family != "vit":
            raise ValueError("last_attention needs a ViT backbone")
        model = self.model
        attn = model.blocks[-1].attn
        if not all(hasattr(attn, a) for a in ("qkv", "num_heads")):
            raise ValueError(f"timm model {type(model).__name__}: its attention module has no qkv "
                             f"projection, so its attention maps cannot be recomputed")
        captured = []
        handle = attn.register_forward_pre_hook(lambda _m, args: captured.append(args[0]))
        try:
            model.forward_features(x)
        finally:
            handle.remove()
        y = captured[-1]
        n, tokens, _ = y.shape
        heads = int(attn.num_heads)
        qkv = attn.qkv(y).reshape(n, tokens, 3, heads, -1).permute(2, 0, 3, 1, 4)
        q, k = qkv[0], qkv[1]
        q = getattr(attn, "q_norm", nn.Identity())(q)
        k = getattr(attn, "k_norm", nn.Identity())(k)
        scale = float(getattr(attn, "scale", q.shape[-1] ** -0.5))
        weights = ((q.float() * scale) @ k.float().transpose(-2, -1)).softmax(dim=-1)
        prefix = int(getattr(model, "num_prefix_tokens", 1))
        cls_to_patches = weights[:, :, 0, prefix:]
        cls_to_patches = cls_to_patches / cls_to_patches.sum(dim=-1, keepdim=True)
        grid_h, grid_w = _timm_grid(model, x)
        return cls_to_patches.reshape(n, heads, grid_h, grid_w)


def _timm_grid(model: nn.Module, x: Tensor) -> tuple[int, int]:
    patch = model.patch_embed.patch_size
    ph, pw = (patch, patch) if isinstance(patch, int) else patch
    return int(x.shape[-2]) // int(ph), int(x.shape[-1]) // int(pw)


# ---- building -------------------------------------------------------------------------------

def _head_path(model: nn.Module) -> str | None:
    """Dotted path of the classifier layer to replace by Identity (None if none is found)."""
    for attr in _HEAD_ATTRS:
        head = getattr(model, attr, None)
        if isinstance(head, nn.Linear):
            return attr
        if isinstance(head, nn.Sequential):
            for cls in (nn.Linear, nn.Conv2d):
                idx = [i for i, m in enumerate(head) if isinstance(m, cls)]
                if idx:
                    return f"{attr}.{idx[-1]}"
    return None


def _set_identity(model: nn.Module, path: str) -> None:
    parent, _, leaf = path.rpartition(".")
    owner = model.get_submodule(parent) if parent else model
    if isinstance(owner, nn.Sequential):
        owner[int(leaf)] = nn.Identity()
    else:
        setattr(owner, leaf, nn.Identity())


def _cifar_stem(model: nn.Module) -> bool:
    """Swap a ResNet's 7x7/2 conv1 + max-pool for a 3x3/1 conv and no pool; False if not a ResNet."""
    conv = getattr(model, "conv1", None)
    if not isinstance(conv, nn.Conv2d) or not hasattr(model, "maxpool"):
        return False
    model.conv1 = nn.Conv2d(conv.in_channels, conv.out_channels, 3, 1, 1, bias=False)
    nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    model.maxpool = nn.Identity()
    return True


def _tv_kwargs(model: str, image_size: int) -> dict:
    from torchvision.models import get_model_builder
    kwargs: dict = {"weights": None}
    if model in _NO_AUX:
        kwargs["aux_logits"] = False
        kwargs["init_weights"] = True
    if model.startswith(("resnet", "resnext", "wide_resnet")):
        kwargs["zero_init_residual"] = True
    if model.startswith("vit_"):
        kwargs["image_size"] = int(image_size)
    get_model_builder(model)          # KeyError for unknown names is checked before
    return kwargs


def _build_torchvision(model_name: str, image_size: int) -> nn.Module:
    from torchvision.models import ResNet, VisionTransformer, get_model
    kwargs = _tv_kwargs(model_name, image_size)
    if model_name.startswith("vit_"):
        patch = int(model_name.rsplit("_", 1)[-1])
        if image_size % patch:
            raise ConfigError(f"data.image_size must be divisible by the patch size {patch} of "
                              f"torchvision:{model_name}, got {image_size}")
    model = get_model(model_name, **kwargs)
    if isinstance(model, VisionTransformer):
        return TorchvisionViT(model)
    if isinstance(model, ResNet) and image_size <= CIFAR_STEM_MAX_SIZE:
        _cifar_stem(model)
    path = _head_path(model)
    if path is None:
        raise ConfigError(f"model.backbone 'torchvision:{model_name}': cannot find its classifier "
                          f"head (looked for {', '.join(_HEAD_ATTRS)})")
    _set_identity(model, path)
    model.head_path = path
    return model


def _timm_is_vit(model: nn.Module) -> bool:
    return all(getattr(model, a, None) is not None for a in ("patch_embed", "blocks", "cls_token"))


def _timm_vit_kwargs(model: nn.Module, image_size: int) -> dict:
    patch = model.patch_embed.patch_size
    patch = int(patch if isinstance(patch, int) else patch[0])
    if image_size % patch or image_size // patch < _MIN_VIT_GRID:
        patch = vit_patch_size(image_size)
    return {"img_size": int(image_size), "patch_size": patch, "dynamic_img_size": True}


@functools.lru_cache(maxsize=64)
def _timm_plan(model_name: str, image_size: int) -> tuple[str, tuple]:
    """(family, extra create_model kwargs) of a timm model, from a build on the meta device."""
    timm = _timm()
    with torch.device("meta"):
        probe = timm.create_model(model_name, pretrained=False, num_classes=0)
    if _timm_is_vit(probe):
        return "vit", tuple(sorted(_timm_vit_kwargs(probe, image_size).items()))
    return "cnn", ()


def _build_timm(name: str, model_name: str, image_size: int) -> TimmBackbone:
    timm = _timm()
    if timm is None:
        raise ConfigError(TIMM_MISSING.format(name=name))
    family, extra = _timm_plan(model_name, image_size)
    try:
        model = timm.create_model(model_name, pretrained=False, num_classes=0, **dict(extra))
    except (TypeError, ValueError, AssertionError) as exc:
        raise ConfigError(f"model.backbone {name!r} cannot be built for data.image_size "
                          f"{image_size}: {exc}") from None
    if family == "cnn" and image_size <= CIFAR_STEM_MAX_SIZE and type(model).__name__ == "ResNet":
        _cifar_stem(model)
    return TimmBackbone(model, family)


def measure_feature_dim(model: nn.Module, image_size: int) -> int:
    """F from a forward pass of two zero images (eval mode, no grad; the training mode is restored)."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            out = model(torch.zeros(2, 3, image_size, image_size))
    finally:
        model.train(was_training)
    if not isinstance(out, Tensor) or out.ndim != 2 or out.shape[0] != 2:
        shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ConfigError(f"model.backbone: the model returns {shape} at {image_size} px, not (N, F)")
    return int(out.shape[1])


def build_external(name: str, image_size: int) -> tuple[nn.Module, int]:
    """Build ``torchvision:<model>`` or ``timm:<model>`` for ``image_size`` px: (module, F)."""
    check_external_name(name)
    prefix, model_name = split_name(name)
    size = int(image_size)
    model = _build_torchvision(model_name, size) if prefix == "torchvision" else _build_timm(name, model_name, size)
    try:
        dim = measure_feature_dim(model, size)
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - a model too deep for the size fails in many ways
        raise ConfigError(f"model.backbone {name!r} cannot run on {size} px images "
                          f"(data.image_size): {exc}") from None
    model.num_features = dim
    return model, dim


@functools.lru_cache(maxsize=64)
def external_family(name: str) -> str:
    """'vit' for ViT-like external models, 'cnn' otherwise (built on the meta device: cheap)."""
    check_external_name(name)
    prefix, model_name = split_name(name)
    if prefix == "torchvision":
        return "vit" if model_name.startswith("vit_") else "cnn"
    return _timm_plan(model_name, 224)[0]


def external_feature_maps(model: nn.Module, x: Tensor) -> Tensor:
    """Last feature map (N, C, h, w) of an external CNN, before its global pooling.

    timm: ``forward_features``. torchvision: the input of the model's last adaptive pooling layer,
    captured with a forward pre-hook during a forward pass (ResNets are handled by the caller)."""
    if isinstance(model, TimmBackbone):
        return model.feature_maps(x)
    pools = [m for m in model.modules() if isinstance(m, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d))]
    if pools:
        captured = []
        handle = pools[-1].register_forward_pre_hook(lambda _m, args: captured.append(args[0]))
        try:
            model(x)
        finally:
            handle.remove()
        if captured and captured[-1].ndim == 4:
            return captured[-1]
    features = getattr(model, "features", None)       # DenseNet pools functionally
    if isinstance(features, nn.Module):
        fm = features(x)
        if isinstance(fm, Tensor) and fm.ndim == 4:
            return fm
    raise ValueError(f"feature_maps does not know backbone type {type(model).__name__}")


def external_build_snippet(name: str, image_size: int) -> tuple[str, str]:
    """(Python that builds ``model``, an external backbone, without SSL Workbench; the prefix of
    its keys in an export's safetensors file) - for the export's README, like ``card.build_snippet``."""
    prefix, model_name = split_name(name)
    size = int(image_size)
    stem = ("model.conv1 = torch.nn.Conv2d(3, model.conv1.out_channels, 3, 1, 1, bias=False)  # CIFAR stem\n"
            "model.maxpool = torch.nn.Identity()\n")
    if prefix == "timm":
        family, extra = _timm_plan(model_name, size)
        args = "".join(f", {k}={v!r}" for k, v in extra)
        with torch.device("meta"):
            probe = _timm().create_model(model_name, pretrained=False, num_classes=0, **dict(extra))
        small_resnet = family == "cnn" and size <= CIFAR_STEM_MAX_SIZE and type(probe).__name__ == "ResNet" \
            and isinstance(getattr(probe, "conv1", None), nn.Conv2d)
        return (f"import torch, timm\nmodel = timm.create_model({model_name!r}, pretrained=False, "
                f"num_classes=0{args})\n{stem if small_resnet else ''}"), "backbone.model."
    kwargs = _tv_kwargs(model_name, size)
    args = "".join(f", {k}={v!r}" for k, v in kwargs.items())
    code = f"import torch, torchvision\nmodel = torchvision.models.get_model({model_name!r}{args})\n"
    if model_name.startswith("vit_"):
        return code + "model.heads = torch.nn.Identity()  # forward returns the CLS token after the final LayerNorm\n", "backbone.vit."
    with torch.device("meta"):
        probe = _build_torchvision(model_name, size)
    from torchvision.models import ResNet
    if isinstance(probe, ResNet) and size <= CIFAR_STEM_MAX_SIZE:
        code += stem
    owner, _, leaf = probe.head_path.rpartition(".")
    target = f"model.{owner}[{leaf}]" if owner else f"model.{leaf}"
    return code + f"{target} = torch.nn.Identity()  # the classifier\n", "backbone."
