"""Relative location, jigsaw, colorization, inpainting, CPC v2 and MAE: a step per supported
backbone family, each loss against an independent computation, where gradients flow (and where
information must not: masked pixels, rows below), the input previews, exact resume and short runs
that beat a random encoder."""

import copy

import pytest
import torch
import torch.nn.functional as F

from backend.config import deep_merge
from backend.data.augment import ViewGenerator
from backend.methods import METHODS
from backend.methods._pretext import spatial_features
from backend.pretext import colorization as col
from backend.pretext.jigsaw import jigsaw_batch, unshuffle
from backend.pretext.masks import random_patch_mask
from backend.pretext.patches import cpc_grid, grid_tiles, patchify, relative_patches
from backend.pretext.reconstruction import normalise_patches
from backend.train import run_training

from .test_methods_zoo_a import LEARN, knn_margin
from .test_trainer import check_resume_is_exact
from .trainer_helpers import CIFAR10, check_one_step, make_run, tiny_config

NAMES = ["relative_location", "jigsaw", "colorization", "inpainting", "cpc", "mae"]
SMALL = {"model": {"projector_hidden_dim": 64, "projector_out_dim": 32}, "method": {"num_permutations": 16}}


def build(name, backbone=None, n=8, size=32, **overrides):
    """A method and the (normalised) views of ``n`` random images."""
    backbone = backbone or ("vit_tiny" if name == "mae" else "tiny_cnn")
    cfg = tiny_config(**deep_merge(deep_merge(SMALL, {"method": {"name": name}, "model": {"backbone": backbone},
                                                      "data": {"image_size": size}}), overrides))
    torch.manual_seed(0)
    method = METHODS[name](cfg)
    gen = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=gen)
    return method, ViewGenerator(cfg.augment, size)(images, generator=gen)


def fork(method):
    """A generator in the state the method's own is in now (to redraw what the step draws)."""
    gen = torch.Generator()
    gen.set_state(method.generator.get_state())
    return gen


def module(name):
    return __import__(f"backend.methods.{name}", fromlist=["preview_inputs"])


# ---- (1) one step per supported backbone family, the previews -----------------------------------

@pytest.mark.parametrize("backbone", ["tiny_cnn", "vit_tiny"])
@pytest.mark.parametrize("name", NAMES)
def test_one_step_is_finite_and_reaches_the_backbone(name, backbone):
    family = "vit" if backbone == "vit_tiny" else "cnn"
    if family not in METHODS[name].families:
        assert name == "mae" and METHODS[name].families == ("vit",)
        return
    n = 8 if family == "cnn" else 4
    method, views = build(name, backbone, n)
    check_one_step(method, views, None, n)
    features, projected = method.embed(views[0])
    assert features.shape == (n, method.feature_dim) and projected.shape[0] == n
    assert not METHODS[name].uses_labels


@pytest.mark.parametrize("name", NAMES)
def test_preview_inputs_are_displayable_images(name):
    method, views = build(name, n=4)
    previews = module(name).preview_inputs(views, method.cfg, torch.Generator().manual_seed(0))
    assert previews
    for caption, images, *tags in previews:   # an optional third item: one tag per image
        assert isinstance(caption, str) and caption
        assert not tags or len(tags[0]) == images.shape[0]
        assert images.dim() == 4 and images.shape[:2] == (4, 3)
        assert images.min() >= 0.0 and images.max() <= 1.0


# ---- (2) each loss as its paper says, against an independent computation ------------------------

def test_relative_location_classifies_the_pair_of_tiles():
    method, views = build("relative_location")
    method.eval()  # BN on running statistics: the tiles may be encoded in any grouping
    pairs = relative_patches(views[0], generator=fork(method))
    out = method.training_step(views, None, 0.0)
    f_centre, f_neighbour = method.backbone(pairs.centre), method.backbone(pairs.neighbour)
    logits = method.classifier(torch.cat([f_centre, f_neighbour], dim=1))
    assert out.loss.item() == pytest.approx(F.cross_entropy(logits, pairs.label).item(), abs=1e-5)
    assert method.classifier[-1].out_features == 8


def test_jigsaw_predicts_the_permutation_of_the_shuffled_tiles():
    method, views = build("jigsaw")
    assert method.permutations.shape == (16, 9) and "permutations" in method.state_dict()
    method.eval()
    gen = fork(method)
    shuffled, target = jigsaw_batch(views[0], method.permutations, generator=copy.deepcopy(gen), normalise=True)
    out = method.training_step(views, None, 0.0)
    per_position = torch.cat([method.backbone(shuffled[:, i]) for i in range(9)], dim=1)
    reference = F.cross_entropy(method.classifier(per_position), target)
    assert out.loss.item() == pytest.approx(reference.item(), abs=1e-5)
    # The label really names the shuffle: undoing it gives the grid's tiles in cell order.
    raw, labels = jigsaw_batch(views[0], method.permutations, generator=copy.deepcopy(gen))
    tiles = grid_tiles(views[0], generator=copy.deepcopy(gen)).tiles
    assert torch.equal(unshuffle(raw, method.permutations, labels), tiles)


def test_colorization_sees_only_grey_and_rebalances_from_counted_pixels(monkeypatch):
    method, views = build("colorization")
    from backend.methods import colorization as module_
    monkeypatch.setattr(module_, "REBALANCE_STEPS", 2)
    grey, ab = module_.grey_input(module_.denormalise(views[0], method.cfg), method.cfg)
    mean, std = torch.tensor(method.cfg.augment.mean).view(1, 3, 1, 1), torch.tensor(method.cfg.augment.std).view(1, 3, 1, 1)
    raw = grey * std + mean
    assert torch.allclose(raw[:, 0], raw[:, 1], atol=1e-5) and torch.allclose(raw[:, 0], raw[:, 2], atol=1e-5)
    assert method.bins.shape == (len(col.ab_bins()), 2) == (262, 2)
    for _ in range(3):  # counts accumulate over REBALANCE_STEPS steps, then freeze
        out = method.training_step(views, None, 0.0)
    assert int(method.counted_steps) == 2
    small = F.adaptive_avg_pool2d(ab, (8, 8))
    counts = 2 * col.bin_counts(small, method.bins)
    assert torch.allclose(method.ab_counts, counts)
    weights = col.rebalance_weights(counts, method.bins).float()
    assert torch.allclose(method.class_weights, weights, atol=1e-6)
    # The loss: rebalanced cross entropy of the soft-encoded pooled ab at 1/4 resolution.
    method.eval()
    out = method.training_step(views, None, 0.0)
    logits, _ = method.predict(grey)
    indices, soft = col.soft_encode(small, method.bins)
    logp = F.log_softmax(logits, dim=1)
    dense = col.soft_encode_dense(indices, soft, 262)
    per_pixel = -(dense * logp).sum(dim=1) * weights[indices[:, 0]]
    assert logits.shape == (8, 262, 8, 8)
    assert out.loss.item() == pytest.approx(per_pixel.mean().item(), rel=1e-5)


@pytest.mark.parametrize("kind", ["central", "random"])
def test_inpainting_encoder_never_sees_the_removed_pixels(kind):
    method, views = build("inpainting", method={"mask": kind})
    x = views[0]
    masked, mask = method.masked_input(x)
    assert mask.shape == (8, 1, 32, 32) and 0 < mask.float().mean() <= 0.25 + 1e-6
    if kind == "central":
        assert mask[:, :, 8:24, 8:24].all() and mask.sum() == 8 * 16 * 16
    assert torch.equal(masked, x.masked_fill(mask, 0.0))
    method.eval()
    gen = fork(method)
    out = method.training_step([x], None, 0.0)
    method.generator.set_state(gen.get_state())
    masked, mask = method.masked_input(x)  # what the step drew
    method.generator.set_state(gen.get_state())
    again, _ = method.masked_input(x + 5.0 * mask)  # other pixels where removed: the same input
    assert torch.equal(again, masked)
    pred = method.decoder(spatial_features(method.backbone, masked))
    removed = mask.expand_as(x)
    reference = ((pred - x)[removed] ** 2).mean()
    assert out.loss.item() == pytest.approx(reference.item(), rel=1e-5)
    assert pred.shape == x.shape
    with pytest.raises(Exception, match="mask"):
        build("inpainting", method={"mask": "diamond"})


def test_inpainting_channel_wise_fc_maps_each_channel_over_all_positions():
    from backend.methods.inpainting import ChannelWiseFC
    torch.manual_seed(0)
    layer = ChannelWiseFC(3, 2, 4)
    x = torch.randn(5, 3, 2, 4, requires_grad=True)
    y = layer(x)
    for c in range(3):  # channel c alone: its 8 positions through its own 8 x 8 linear map
        expected = x[:, c].flatten(1) @ layer.weight[c] + layer.bias[c]
        assert torch.allclose(y[:, c].flatten(1), expected, atol=1e-6)
    # Every position of a channel reaches every output position of it, and no other channel.
    grad = torch.autograd.grad(y[:, 1, 0, 0].sum(), x)[0]
    assert (grad[:, 1] != 0).all() and (grad[:, [0, 2]] == 0).all()
    assert layer.weight.shape == (3, 8, 8)
    with pytest.raises(ValueError, match="channel-wise FC"):
        layer(torch.randn(1, 3, 4, 4))


@pytest.mark.parametrize("backbone", ["tiny_cnn", "vit_tiny"])
def test_inpainting_decoder_reads_the_feature_map_of_either_family(backbone):
    method, views = build("inpainting", backbone, n=4)
    maps = spatial_features(method.backbone, views[0])
    assert method.decoder.channel_fc.shape == tuple(maps.shape[1:])
    assert method.decoder(maps).shape == views[0].shape


def test_cpc_context_sees_only_rows_above_and_the_loss_scores_every_patch():
    method, views = build("cpc", n=4)
    z = torch.randn(2, 32, 7, 7)
    c = method.context(z)
    for row in range(6):
        later = z.clone()
        later[:, :, row + 1:] = torch.randn_like(later[:, :, row + 1:])
        assert torch.allclose(method.context(later)[:, :, :row + 1], c[:, :, :row + 1], atol=1e-6)
        assert not torch.allclose(method.context(later)[:, :, row + 1:], c[:, :, row + 1:])
    # The loss, written out: each prediction k rows ahead against all N*49 latents.
    method.eval()
    out = method.training_step(views, None, 0.0)
    grid = cpc_grid(views[0])
    feats = torch.stack([torch.stack([method.backbone(grid[:, i, j]) for j in range(7)], 1) for i in range(7)], 1)
    zr = method.projector(feats)                                     # (N, 7, 7, D)
    preds = method.predictions(zr.permute(0, 3, 1, 2))
    keys = zr.reshape(-1, zr.shape[-1])
    total = 0.0
    for k, pred in enumerate(preds, start=1):
        terms = []
        for n in range(4):
            for i in range(7 - k):
                for j in range(7):
                    logits = keys @ pred[n, :, i, j]
                    terms.append(torch.logsumexp(logits, 0) - logits[(n * 7 + i + k) * 7 + j])
        total = total + torch.stack(terms).mean()
    assert len(preds) == 3
    assert out.loss.item() == pytest.approx((total / 3).item(), rel=1e-4)


def test_mae_encoder_sees_visible_patches_only_and_loss_is_on_masked_ones():
    method, views = build("mae", n=4, size=16)
    vit, x = method.backbone, views[0]
    vit.eval()
    method.eval()
    # forward_tokens keeps the backbone's behaviour: CLS = forward, all ids = every token.
    full = vit.forward_tokens(x)
    assert torch.allclose(full[:, 0], vit(x), atol=1e-5)
    every = torch.arange(full.shape[1] - 1).repeat(4, 1)
    assert torch.allclose(vit.forward_tokens(x, every), full, atol=1e-5)
    assert vit.last_attention(x).shape[1:] == (3, 4, 4)
    gen = fork(method)
    masking = random_patch_mask(4, 16, 0.75, generator=copy.deepcopy(gen))
    assert masking.ids_keep.shape == (4, 4) and int(masking.mask.sum()) == 4 * 12
    out = method.training_step(views, None, 0.0)
    # Hidden pixels changed: the encoder's tokens are the same.
    pixels = masking.mask.view(4, 1, 4, 4).repeat_interleave(4, 2).repeat_interleave(4, 3)
    tokens = vit.forward_tokens(x, masking.ids_keep)
    assert torch.allclose(vit.forward_tokens(x + 3.0 * pixels, masking.ids_keep), tokens, atol=1e-5)
    pred = method.decoder(tokens, masking.ids_restore)
    target = normalise_patches(patchify(x, 4))
    per_patch = ((pred - target) ** 2).mean(dim=-1)
    reference = per_patch[masking.mask.bool()].mean()
    assert out.loss.item() == pytest.approx(reference.item(), rel=1e-5)
    # Gradients reach the mask token and the encoder, and the features are the CLS token.
    out = method.training_step(views, None, 0.0)
    out.loss.backward()
    assert method.decoder.mask_token.grad is not None and method.decoder.mask_token.grad.abs().sum() > 0
    assert vit.vit.conv_proj.weight.grad.abs().sum() > 0
    assert torch.allclose(method.embed(x)[0], vit(x), atol=1e-5)


def test_decoders_and_heads_get_gradients():
    for name, parts in (("relative_location", ("classifier",)), ("jigsaw", ("classifier",)),
                        ("colorization", ("decoder_in", "decoder")), ("inpainting", ("decoder",)),
                        ("cpc", ("projector", "context", "predictors"))):
        method, views = build(name, n=8)
        method.training_step(views, None, 0.0).loss.backward()
        for part in parts:
            grads = [p.grad for p in getattr(method, part).parameters()]
            assert grads and all(g is not None for g in grads), (name, part)
        assert not any(b.requires_grad for b in method.buffers())


# ---- (3) exact resume and learning --------------------------------------------------------------

RESUME = {"data": {"synthetic_train_size": 64, "image_size": 16}, "optim": {"batch_size": 16},
          "model": SMALL["model"]}


# One exact-resume run stays in the default suite (the machinery is shared); the rest are `long`.
@pytest.mark.parametrize("name", [n if n == "jigsaw" else pytest.param(n, marks=pytest.mark.long) for n in NAMES])
def test_resume_is_exact(tmp_path, name):
    backbone = "vit_tiny" if name == "mae" else "tiny_cnn"
    method = {"name": name, **({"num_permutations": 16} if name == "jigsaw" else {})}
    check_resume_is_exact(tmp_path, deep_merge(RESUME, {"method": method, "model": {"backbone": backbone}}))


# A real run of each method must beat its random-init encoder's kNN by more than 0.03 (k = 10).
# These runs take minutes on the 2-core test machine, so they are `long`. Data: LEARN's 16 px
# synthetic shapes for CPC and MAE; real CIFAR-10 photos at 32 px (2048 train - 8192 for relative
# location - and 1000 test images; skipped when the shared copy is absent) for the tile,
# colorization and inpainting tasks, which are made for natural images (at 16 px a tile is 4 px,
# and on the synthetic shapes colour is random and carries no class). MAE reads the mean patch
# token (model.vit_pool = "mean", as its preset does).
# Measured margins, trained - random (sessions 4-8; seed 0 unless said):
#   passing: colorization +0.077 / +0.065 (seeds 0, 1; CIFAR, 16 epochs, its preset's colour
#     settings: no colour jitter, no greying - the colours are its target). Until session 8 it ran
#     on the synthetic shapes with LEARN's jitter and greying and failed (-0.078; the shapes'
#     colours are random, so there is nothing to predict); on CIFAR with jitter and greying
#     +0.047 / +0.026 / +0.070.
#   passing: jigsaw +0.040 (CIFAR, 16 epochs; +0.004 on 16 px shapes), CPC +0.055 (32 epochs;
#     +0.016 after 16), inpainting +0.055 / +0.015 (seeds 0, 1 - seed 1 under the bar; CIFAR,
#     16 epochs, its preset's colour settings: no jitter, no greying; with the channel-wise FC
#     decoder on the feature map - the old pooled-vector decoder was at -0.002). With LEARN's jitter and greying it read
#     +0.035 / +0.038 / +0.026 in session 6 and +0.018 in session 8 (0.7-1 crops: +0.043 / +0.002).
#   passing: MAE +0.061 / +0.031 / +0.051 (seeds 0-2; 64 epochs on the shapes with MAE's optimiser: AdamW
#     with weight decay 0.05, beta2 0.95, 4 warm-up epochs, peak lr 5e-4 at batch 32). With the
#     shared LEARN optimiser (peak 2e-3, no warm-up, decay 1e-4) it was +0.018 after 32 epochs
#     (the CLS token: -0.006); with MAE's, +0.039 / -0.010 / +0.021 after 32. On CIFAR at 32 px,
#     16 epochs: -0.037 with LEARN's optimiser, -0.003 with MAE's (linear probe +0.014).
#   passing: relative location +0.054 / +0.038 / +0.039 / +0.064 (seeds 0-3; CIFAR, 8,192 images,
#     4 epochs, the preset's whole-image views with colour jitter). Sessions 4-7 trained it on
#     0.3-1 area crops of 2,048 images with 2/3 grey and no jitter and it failed: 16 epochs
#     +0.019 / -0.004 / -0.007 / +0.016, 8 epochs +0.036 / +0.016 / -0.001 / +0.012, -0.033 after
#     64. What mattered (seed 0 unless said; session 8): whole-image views (+0.019 -> +0.048 on
#     2,048 images; 0.7-1 crops +0.039), more images for the same steps (8,192 x 4 epochs with
#     2/3 grey: +0.035 / +0.030 / +0.046 / +0.021), then colour jitter instead of 2/3 grey (the
#     numbers above; 8 epochs: +0.045 / +0.051). What did not: all 8 neighbours per centre (train
#     accuracy 0.47 against 0.30, kNN -0.001 / +0.010), 6 px tiles, ResNet-18 (-0.015 / +0.038),
#     a lower learning rate or SGD; on the synthetic shapes at 32-48 px the task is barely learnt
#     (train accuracy 0.14, chance 0.125; kNN -0.07 to -0.02, also with the classifier on the
#     tiles' 2 x 2 feature maps).
CIFAR_LEARN = {"data": {"source": f"imagefolder:{CIFAR10}", "train_limit": 2048, "test_limit": 1000,
                        "image_size": 32}}
LONG_RUNS = {
    "relative_location": deep_merge(CIFAR_LEARN, {"data": {"train_limit": 8192}, "schedule": {"epochs": 4},
                                                  "augment": {"crop_scale": [1.0, 1.0], "crop_ratio": [1.0, 1.0]}}),
    "jigsaw": deep_merge(CIFAR_LEARN, {"schedule": {"epochs": 16}, "method": {"num_permutations": 64}}),
    "colorization": deep_merge(CIFAR_LEARN, {"schedule": {"epochs": 16},
                                             "augment": {"jitter_prob": 0.0, "grayscale_prob": 0.0}}),
    "inpainting": deep_merge(CIFAR_LEARN, {"schedule": {"epochs": 16},
                                           "augment": {"jitter_prob": 0.0, "grayscale_prob": 0.0}}),
    "cpc": {"schedule": {"epochs": 32}},
    "mae": {"optim": {"lr": 0.004, "weight_decay": 0.05, "adam_beta2": 0.95},
            "schedule": {"epochs": 64, "warmup_epochs": 4}, "model": {"vit_pool": "mean"}},
}


@pytest.mark.long
@pytest.mark.timeout(900)  # CPC's 32 epochs took 4.5 minutes of training on the loaded CPU, MAE's 64 about 4.5
@pytest.mark.parametrize("name", NAMES)
def test_long_run_beats_random_init(tmp_path, name):
    extra = LONG_RUNS[name]
    if "imagefolder" in extra.get("data", {}).get("source", "") and not (CIFAR10 / "train").is_dir():
        pytest.skip(f"real photos: CIFAR-10 is absent at {CIFAR10}")
    backbone = "vit_tiny" if name == "mae" else "tiny_cnn"
    overrides = deep_merge(LEARN, {"method": {"name": name}, "model": {"backbone": backbone, "projector_out_dim": 32}})
    run = make_run(tmp_path, **deep_merge(overrides, extra))
    assert run_training(run, echo=False) == 0
    trained, random = knn_margin(run)
    assert trained > random + 0.03, (trained, random)
