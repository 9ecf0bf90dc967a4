"""Backbones and heads: shapes, the ViT patch rule and attention maps, head structure."""

import pytest
import torch
from torch import nn

from backend.config import BACKBONES
from backend.errors import ConfigError
from backend.models import (BACKBONE_NAMES, DINOHead, Prototypes, ViTBackbone, backbone_family,
                            build_backbone, feature_maps, mlp_head, vit_patch_size)

FEATURE_DIMS = {"tiny_cnn": 256, "resnet18": 512, "resnet34": 512, "resnet50": 2048,
                "vit_tiny": 192, "vit_small": 384}


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def test_names_match_config():
    assert tuple(BACKBONE_NAMES) == tuple(BACKBONES)
    assert set(FEATURE_DIMS) == set(BACKBONE_NAMES)


@pytest.mark.parametrize("name,size", [(n, s) for n in BACKBONE_NAMES for s in (32, 64)]
                         + [("vit_tiny", 96), ("vit_small", 96)])
def test_backbone_output_shape(name, size):
    model, dim = build_backbone(name, size)
    assert dim == FEATURE_DIMS[name]
    with torch.no_grad():
        out = model(torch.randn(2, 3, size, size))
    assert out.shape == (2, dim)
    assert torch.isfinite(out).all()


def test_unknown_backbone_raises_config_error_with_field_path():
    with pytest.raises(ConfigError, match=r"model\.backbone must be one of .*got 'resnet9000'"):
        build_backbone("resnet9000", 32)
    with pytest.raises(ConfigError, match=r"model\.backbone"):
        backbone_family("nope")


def test_backbone_family():
    assert [backbone_family(n) for n in BACKBONE_NAMES] == ["cnn"] * 4 + ["vit"] * 2


def test_vit_patch_size_rule():
    assert [vit_patch_size(s) for s in (32, 64, 96, 224)] == [4, 8, 8, 16]
    for size in range(8, 513):
        try:
            p = vit_patch_size(size)
        except ConfigError as exc:
            assert "data.image_size" in str(exc)
            continue
        assert size % p == 0 and p >= 2
    with pytest.raises(ConfigError, match=r"data\.image_size"):
        vit_patch_size(37)


@pytest.mark.parametrize("size,grid", [(32, 8), (64, 8), (96, 12)])
def test_vit_grid(size, grid):
    model, _ = build_backbone("vit_tiny", size)
    assert isinstance(model, ViTBackbone)
    assert model.grid_size == grid and model.patch_size * grid == size


def test_resnet_stem_and_zero_init():
    small, _ = build_backbone("resnet18", 32)
    assert small.conv1.kernel_size == (3, 3) and small.conv1.stride == (1, 1)
    assert isinstance(small.maxpool, nn.Identity) and isinstance(small.fc, nn.Identity)
    large, _ = build_backbone("resnet18", 96)
    assert large.conv1.kernel_size == (7, 7) and isinstance(large.maxpool, nn.MaxPool2d)
    assert all(torch.all(block.bn2.weight == 0) for block in small.layer1)


@pytest.mark.parametrize("name", ["tiny_cnn", "resnet18", "vit_tiny"])
def test_channels_last_and_bf16_autocast(name):
    model, dim = build_backbone(name, 32)
    model = model.to(memory_format=torch.channels_last)
    x = torch.randn(2, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        plain = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = model(x)
    assert plain.shape == mixed.shape == (2, dim)
    assert torch.isfinite(mixed.float()).all()


def test_vit_forward_matches_torchvision_and_takes_local_crops():
    model, dim = build_backbone("vit_tiny", 32)
    model.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        vit = model.vit
        tokens = torch.cat([vit.class_token.expand(2, -1, -1), vit._process_input(x)], dim=1)
        reference = vit.encoder(tokens)[:, 0]
        assert torch.allclose(model(x), reference, atol=1e-5)
        assert model(torch.randn(2, 3, 16, 16)).shape == (2, dim)  # DINO local crop


def _reference_cls_attention(model: ViTBackbone, x: torch.Tensor) -> torch.Tensor:
    """Recompute the last block's CLS attention from its in_proj weights and ln_1 output."""
    last = model.vit.encoder.layers[-1]
    captured = {}
    hook = last.ln_1.register_forward_hook(lambda m, i, o: captured.setdefault("y", o))
    try:
        model(x)
    finally:
        hook.remove()
    y = captured["y"]                                              # (N, T, D)
    n, t, d = y.shape
    heads = last.self_attention.num_heads
    w, b = last.self_attention.in_proj_weight, last.self_attention.in_proj_bias
    q = (y[:, :1] @ w[:d].T + b[:d]).reshape(n, 1, heads, d // heads).transpose(1, 2)
    k = (y @ w[d:2 * d].T + b[d:2 * d]).reshape(n, t, heads, d // heads).transpose(1, 2)
    attn = torch.softmax(q @ k.transpose(-1, -2) / (d // heads) ** 0.5, dim=-1)[:, :, 0, 1:]
    attn = attn / attn.sum(-1, keepdim=True)
    g = model.grid_size
    return attn.reshape(n, heads, g, g)


@pytest.mark.parametrize("name,heads", [("vit_tiny", 3), ("vit_small", 6)])
def test_vit_last_attention(name, heads):
    model, _ = build_backbone(name, 32)
    model.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        attn = model.last_attention(x)
        reference = _reference_cls_attention(model, x)
    assert attn.shape == (2, heads, 8, 8)
    assert (attn >= 0).all()
    assert torch.allclose(attn.sum(dim=(-1, -2)), torch.ones(2, heads), atol=1e-5)
    assert torch.allclose(attn, reference, atol=1e-5)


def test_feature_maps():
    for name, channels in (("resnet18", 512), ("tiny_cnn", 256)):
        model, _ = build_backbone(name, 32)
        model.eval()
        x = torch.randn(2, 3, 32, 32)
        with torch.no_grad():
            fmap = feature_maps(model, x)
            assert fmap.shape == (2, channels, 4, 4)
            assert torch.allclose(fmap.mean(dim=(2, 3)), model(x), atol=1e-5)
    vit, _ = build_backbone("vit_tiny", 32)
    with pytest.raises(ValueError, match="CNN"):
        feature_maps(vit, torch.randn(2, 3, 32, 32))


def test_mlp_head_structure():
    head = mlp_head(16, 32, 8, num_layers=3)
    kinds = [type(m) for m in head]
    assert kinds == [nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear]
    assert [m.out_features for m in head if isinstance(m, nn.Linear)] == [32, 32, 8]
    assert head[-1].bias is not None
    assert head(torch.randn(4, 16)).shape == (4, 8)

    head = mlp_head(16, 32, 8, num_layers=2, last_bn=True, last_bn_affine=False)
    assert [type(m) for m in head] == [nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear, nn.BatchNorm1d]
    assert not head[-1].affine and head[-2].bias is None
    assert head(torch.randn(4, 16)).shape == (4, 8)

    head = mlp_head(16, 32, 8, num_layers=2, batch_norm=False)
    assert [type(m) for m in head] == [nn.Linear, nn.ReLU, nn.Linear]
    assert [type(m) for m in mlp_head(16, 32, 8, num_layers=1)] == [nn.Linear]


@pytest.mark.parametrize("norm_last_layer", [True, False])
def test_dino_head(norm_last_layer):
    head = DINOHead(32, 100, hidden_dim=64, bottleneck_dim=16, norm_last_layer=norm_last_layer)
    assert sum(isinstance(m, nn.Linear) for m in head.mlp) == 3
    assert any(isinstance(m, nn.GELU) for m in head.mlp)
    out = head(torch.randn(4, 32))
    assert out.shape == (4, 100)
    g = head.last_layer.weight_g
    assert torch.all(g == 1)
    assert g.requires_grad is (not norm_last_layer)
    # unit-norm rows and an L2-normalised bottleneck: the logits are cosines
    assert torch.allclose(head.last_layer.weight.norm(dim=1), torch.ones(100), atol=1e-5)
    assert out.abs().max() <= 1 + 1e-5


def test_prototypes():
    protos = Prototypes(16, 10)
    with torch.no_grad():
        protos.weight.mul_(torch.rand(10, 1) * 5 + 0.1)
    protos.normalize_()
    assert torch.allclose(protos.weight.norm(dim=1), torch.ones(10), atol=1e-6)
    x = torch.randn(4, 16) * 3
    expected = torch.nn.functional.normalize(x, dim=1) @ protos.weight.T
    assert torch.allclose(protos(x), expected, atol=1e-6)
    assert protos(x).shape == (4, 10)


def test_vit_drop_path_is_stochastic_in_training_only():
    from backend.models.vit import _block_with_drop_path, build_vit
    torch.manual_seed(0)
    plain = build_vit("vit_tiny", 32)
    deep = build_vit("vit_tiny", 32, drop_path_rate=0.5)
    deep.load_state_dict(plain.state_dict())
    assert deep.drop_path_rates[0] == 0.0 and deep.drop_path_rates[-1] == pytest.approx(0.5)
    x = torch.randn(4, 3, 32, 32)
    plain.eval(), deep.eval()
    assert torch.equal(plain(x), deep(x))  # evaluation: no blocks dropped
    block = plain.vit.encoder.layers[0].train()
    tokens = torch.randn(4, 65, 192)
    assert torch.allclose(_block_with_drop_path(block, tokens, 0.0), block(tokens), atol=1e-6)
    deep.train()
    torch.manual_seed(1)
    a = deep(x)
    torch.manual_seed(2)
    b = deep(x)
    assert not torch.allclose(a, b)


def test_vit_mean_pooling_reads_the_patch_tokens_with_the_same_weights():
    from backend.models.vit import build_vit
    torch.manual_seed(0)
    cls = build_vit("vit_tiny", 32).eval()
    mean = build_vit("vit_tiny", 32, pool="mean").eval()
    mean.load_state_dict(cls.state_dict())        # same parameters, only the read-out differs
    x = torch.randn(3, 3, 32, 32)
    tokens = cls.forward_tokens(x)                # (3, 1 + 64, 192) after the final LayerNorm
    assert torch.allclose(cls(x), tokens[:, 0], atol=1e-5)
    assert torch.allclose(mean(x), tokens[:, 1:].mean(dim=1), atol=1e-5)
    assert not torch.allclose(mean(x), cls(x), atol=1e-3)
    with pytest.raises(ValueError, match="pool"):
        build_vit("vit_tiny", 32, pool="max")


def test_vit_pool_mean_on_a_cnn_is_a_config_error_naming_the_field():
    with pytest.raises(ConfigError, match="model.vit_pool"):
        build_backbone("tiny_cnn", 32, vit_pool="mean")
