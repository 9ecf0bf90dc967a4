"""The augmentation preview's network inputs (``backend.methods.preview_inputs``) are what each
method's training step builds: for the same views and the same generator state, the preview's
images are (up to display clamping) the step's own tensors, recomputed here independently."""

import pytest
import torch
import torch.nn.functional as F

from backend.methods import has_preview_inputs, preview_inputs
from backend.methods import colorization as col_module
from backend.methods._pretext import ab_as_colour, denormalise, normalise
from backend.models.backbones import unwrap_backbone

from .test_methods_pretext import build, fork


def hook_inputs(module):
    """Record the first positional input of every forward call of ``module``."""
    seen = []
    module.register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach().clone()))
    return seen


def test_unknown_method_is_a_clear_error_and_plain_methods_have_none():
    with pytest.raises(ValueError, match="unknown method 'nope'"):
        preview_inputs("nope", [], None)
    assert not has_preview_inputs("simclr")
    method, views = build("jigsaw", n=2)
    assert preview_inputs("simclr", views, method.cfg) == []


def test_jigsaw_preview_is_the_steps_shuffled_tiles(monkeypatch):
    method, views = build("jigsaw", n=4)
    method.eval()
    gen = fork(method)
    seen = hook_inputs(method.backbone)
    targets = []
    real_ce = F.cross_entropy
    monkeypatch.setattr(F, "cross_entropy", lambda logits, target, *a, **k: targets.append(target) or
                        real_ce(logits, target, *a, **k))
    method.training_step(views, None, 0.0)
    [(caption, images, tags)] = preview_inputs("jigsaw", views, method.cfg, gen)
    assert "shuffled" in caption and images.shape[0] == 4
    assert tags == [f"#{int(t)}" for t in targets[0]]
    fed = seen[0].view(4, 9, 3, *seen[0].shape[-2:])          # what the backbone received
    t = fed.shape[-1]
    assert images.shape[-1] == 3 * t + 2                     # 3 x 3 tiles, 1 px gaps
    for i in range(9):
        r, q = divmod(i, 3)
        tile = normalise(images[:, :, r * (t + 1):r * (t + 1) + t, q * (t + 1):q * (t + 1) + t], method.cfg)
        mean = tile.mean(dim=(1, 2, 3), keepdim=True)
        std = tile.std(dim=(1, 2, 3), keepdim=True, unbiased=False)
        assert torch.allclose((tile - mean) / (std + 1e-5), fed[:, i], atol=1e-3)


def test_mae_preview_hides_the_patches_the_encoder_does_not_see(monkeypatch):
    method, views = build("mae", n=3, method={"mask_ratio": 0.6})
    vit = unwrap_backbone(method.backbone)
    kept = []
    real = vit.forward_tokens
    monkeypatch.setattr(vit, "forward_tokens", lambda x, ids=None: kept.append(ids) or real(x, ids))
    gen = fork(method)
    method.training_step(views, None, 0.0)
    (caption, masked, _), (_, full, _) = preview_inputs("mae", views, method.cfg, gen)
    p, g = vit.patch_size, vit.grid_size
    hidden = torch.ones(3, g * g)
    hidden.scatter_(1, kept[0], 0.0)
    assert int(hidden[0].sum()) == round(0.6 * g * g) and "60 %" in caption
    pixels = hidden.view(3, 1, g, g).repeat_interleave(p, 2).repeat_interleave(p, 3)
    rgb = denormalise(views[0], method.cfg)
    assert torch.allclose(masked, rgb * (1 - pixels) + 0.5 * pixels, atol=1e-6)
    assert torch.allclose(full, rgb)


def test_colorization_preview_is_the_steps_l_input_and_ab_target(monkeypatch):
    method, views = build("colorization", n=3)
    grey_in, ab_seen = [], []
    real_predict, real_encode = method.predict, col_module.soft_encode
    monkeypatch.setattr(method, "predict", lambda grey: grey_in.append(grey) or real_predict(grey))
    monkeypatch.setattr(col_module, "soft_encode", lambda ab, bins: ab_seen.append(ab) or real_encode(ab, bins))
    method.training_step(views, None, 0.0)
    (l_caption, grey, _), (ab_caption, ab_rgb, _) = preview_inputs("colorization", views, method.cfg)
    assert "L channel" in l_caption and "ab target" in ab_caption and "fixed L = 50" in ab_caption
    assert torch.allclose(normalise(grey, method.cfg), grey_in[0], atol=1e-5)
    assert torch.equal(grey[:, 0], grey[:, 1]) and torch.equal(grey[:, 0], grey[:, 2])
    assert ab_rgb.shape[-2:] == ab_seen[0].shape[-2:] == (8, 8)
    assert torch.allclose(ab_rgb, ab_as_colour(ab_seen[0], 50.0), atol=1e-5)


def test_inpainting_preview_is_the_steps_masked_input(monkeypatch):
    from backend.methods import inpainting as inpainting_module
    method, views = build("inpainting", n=3, method={"mask": "random"})
    gen = fork(method)
    seen, real = [], inpainting_module.spatial_features  # the encoder reads its feature map
    monkeypatch.setattr(inpainting_module, "spatial_features", lambda net, x: seen.append(x) or real(net, x))
    method.training_step(views, None, 0.0)
    (_, masked, _), _ = preview_inputs("inpainting", views, method.cfg, gen)
    assert torch.allclose(normalise(masked, method.cfg), seen[0], atol=1e-5)


def test_cmc_preview_is_what_each_encoder_receives():
    method, views = build("cmc", n=3)
    l_seen, ab_seen = hook_inputs(method.backbone.l_encoder), hook_inputs(method.backbone.ab_encoder)
    method.training_step(views, None, 0.0)
    (_, grey, _), (_, ab_rgb, _) = preview_inputs("cmc", views, method.cfg)
    assert torch.allclose(grey * 2 - 1, l_seen[0], atol=1e-5)
    assert torch.allclose(ab_rgb, ab_as_colour(ab_seen[0][:, :2] * 110.0, 50.0), atol=1e-5)
