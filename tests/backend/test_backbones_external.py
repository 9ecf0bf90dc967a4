"""External backbones: torchvision:<name> and timm:<name> (random init, no downloads)."""

import builtins

import pytest
import torch
from torch import nn

from backend.errors import ConfigError
from backend.models import (backbone_family, build_backbone, check_backbone_name, feature_maps,
                            is_vit_backbone, last_attention)

try:
    import timm  # noqa: F401
    HAVE_TIMM = True
except ImportError:
    HAVE_TIMM = False

needs_timm = pytest.mark.skipif(not HAVE_TIMM, reason="timm is not installed (optional extra)")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _one_sgd_step(model: nn.Module, size: int) -> None:
    """One SGD step on random data: the weights move and the BN running stats update."""
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    bn = next(m for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    stats_before = bn.running_mean.clone()
    before = [p.detach().clone() for p in model.parameters()]
    loss = model(torch.randn(4, 3, size, size)).pow(2).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters()))
    assert not torch.equal(stats_before, bn.running_mean)


def _check_round_trip(name: str, model: nn.Module, size: int) -> None:
    fresh, _ = build_backbone(name, size)
    fresh.load_state_dict(model.state_dict())           # strict: same architecture and names
    model.eval(), fresh.eval()
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        assert torch.allclose(model(x), fresh(x), atol=1e-6)


@pytest.mark.parametrize("name", ["torchvision:resnet18",
                                  pytest.param("timm:resnet18", marks=needs_timm)])
def test_resnet18_builds_trains_and_round_trips(name):
    model, dim = build_backbone(name, 32)
    assert dim == 512
    with torch.no_grad():
        assert model.eval()(torch.randn(2, 3, 32, 32)).shape == (2, 512)
    assert backbone_family(name) == "cnn" and not is_vit_backbone(model)
    assert feature_maps(model, torch.randn(2, 3, 32, 32)).shape == (2, 512, 4, 4)  # CIFAR stem
    _one_sgd_step(model, 32)
    _check_round_trip(name, model, 32)


def test_torchvision_resnet_matches_the_builtin_one():
    ours, _ = build_backbone("torchvision:resnet18", 32)
    builtin, _ = build_backbone("resnet18", 32)
    builtin.load_state_dict(ours.state_dict())
    assert ours.conv1.kernel_size == (3, 3) and isinstance(ours.maxpool, nn.Identity)
    big, _ = build_backbone("torchvision:resnet18", 96)      # ImageNet stem above 64 px
    assert big.conv1.kernel_size == (7, 7) and isinstance(big.maxpool, nn.MaxPool2d)


def test_torchvision_head_found_by_forward():
    model, dim = build_backbone("torchvision:mobilenet_v3_small", 32)
    assert dim == 1024 and model.head_path == "classifier.3"
    with torch.no_grad():
        assert model.eval()(torch.randn(2, 3, 32, 32)).shape == (2, 1024)
    assert feature_maps(model, torch.randn(2, 3, 32, 32)).shape == (2, 576, 1, 1)


def test_torchvision_vit_attention_and_local_crops():
    model, dim = build_backbone("torchvision:vit_b_32", 64)
    assert dim == 768 and backbone_family("torchvision:vit_b_32") == "vit"
    assert is_vit_backbone(model)
    maps = last_attention(model, torch.randn(2, 3, 64, 64))
    assert maps.shape == (2, 12, 2, 2)
    assert torch.allclose(maps.sum(dim=(-2, -1)), torch.ones(2, 12), atol=1e-5)
    with torch.no_grad():
        assert model(torch.randn(1, 3, 32, 32)).shape == (1, 768)   # smaller crop: pos-emb resized
    with pytest.raises(ConfigError, match=r"data\.image_size.*patch size 32"):
        build_backbone("torchvision:vit_b_32", 48)


@needs_timm
def test_timm_vit_attention_maps():
    name = "timm:vit_tiny_patch16_224"
    model, dim = build_backbone(name, 32)
    assert dim == 192 and backbone_family(name) == "vit" and is_vit_backbone(model)
    assert model.model.patch_embed.patch_size[0] == 4          # 16 -> 4 at 32 px: an 8x8 grid
    x = torch.randn(2, 3, 32, 32)
    maps = last_attention(model, x)
    assert maps.shape == (2, 3, 8, 8) and maps.dtype == torch.float32
    assert torch.allclose(maps.sum(dim=(-2, -1)), torch.ones(2, 3), atol=1e-5)
    # the recomputed attention equals timm's own (unfused) softmax in the last block
    attn = model.model.blocks[-1].attn
    seen = []
    attn.fused_attn = False
    handle = attn.attn_drop.register_forward_hook(lambda _m, inp, _out: seen.append(inp[0]))
    with torch.no_grad():
        model.eval()(x)
    handle.remove()
    ref = seen[-1][:, :, 0, 1:]
    ref = (ref / ref.sum(-1, keepdim=True)).reshape(2, 3, 8, 8)
    with torch.no_grad():
        assert torch.allclose(last_attention(model, x), ref, atol=1e-5)
        assert model(torch.randn(1, 3, 16, 16)).shape == (1, 192)  # dynamic size: local crops
    with pytest.raises(ValueError, match="CNN"):
        feature_maps(model, x)


def test_unknown_names_are_clear_config_errors():
    with pytest.raises(ConfigError, match=r"model\.backbone 'torchvision:resnet9000'.*torchvision"):
        build_backbone("torchvision:resnet9000", 32)
    with pytest.raises(ConfigError, match=r"model\.backbone must look like"):
        check_backbone_name("torchvision:")
    with pytest.raises(ConfigError, match=r"model\.backbone must be one of .*torchvision:<model>"):
        backbone_family("keras:resnet18")
    if HAVE_TIMM:
        with pytest.raises(ConfigError, match=r"timm has no model 'resnet9000'"):
            build_backbone("timm:resnet9000", 32)


def test_missing_timm_is_a_clear_config_error(monkeypatch):
    real_import = builtins.__import__

    def no_timm(name, *args, **kwargs):
        if name == "timm" or name.startswith("timm."):
            raise ImportError("No module named 'timm'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_timm)
    msg = r"model\.backbone 'timm:resnet18' needs the timm package: pip install 'ssl-workbench\[timm\]'"
    with pytest.raises(ConfigError, match=msg):
        build_backbone("timm:resnet18", 32)
    with pytest.raises(ConfigError, match=msg):
        check_backbone_name("timm:resnet18")


def test_too_small_image_is_a_config_error():
    with pytest.raises(ConfigError, match=r"data\.image_size"):
        build_backbone("torchvision:inception_v3", 32)


@pytest.mark.parametrize("name,size", [("torchvision:resnet18", 32), ("torchvision:mobilenet_v3_small", 32),
                                       ("torchvision:vit_b_32", 64),
                                       pytest.param("timm:resnet18", 32, marks=needs_timm),
                                       pytest.param("timm:vit_tiny_patch16_224", 32, marks=needs_timm)])
def test_export_snippet_rebuilds_the_backbone_without_the_workbench(name, size):
    from backend.models.external import external_build_snippet

    model, _ = build_backbone(name, size)
    code, prefix = external_build_snippet(name, size)
    scope: dict = {}
    exec(code, scope)                                   # the README's code, run as a user would
    # an export stores the backbone's tensors under "backbone."; the README strips the snippet's prefix
    exported = {"backbone." + k: v for k, v in model.state_dict().items()}
    plain = {k[len(prefix):]: v for k, v in exported.items() if k.startswith(prefix)}
    rebuilt = scope["model"]
    rebuilt.load_state_dict(plain)
    model.eval(), rebuilt.eval()
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        assert torch.allclose(model(x), rebuilt(x), atol=1e-5)
