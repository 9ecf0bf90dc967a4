"""Evaluations feed each backbone what it was trained on (``Method.feature_encoder`` and the
``input_adapter`` hook): colorization's backbone sees the grey L-channel image in kNN, the
embeddings and the export, as in its training step; CMC's L and ab encoders see L and ab;
plain methods are unchanged (the backbone itself)."""

import torch

from backend.data.augment import ViewGenerator
from backend.evaluate import evaluate_knn_checkpoint, extract_features
from backend.export.formats import load_safetensors, write_safetensors
from backend.export.module import from_method
from backend.methods import METHODS
from backend.methods._pretext import denormalise
from backend.methods.colorization import grey_input
from backend.runs import read_run_config

from .test_methods_pretext import build
from .trainer_helpers import make_run


def images(n=6, size=32):
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(5))


def is_grey(x, cfg):
    rgb = denormalise(x, cfg)
    return torch.allclose(rgb[:, 0], rgb[:, 1], atol=1e-5) and torch.allclose(rgb[:, 1], rgb[:, 2], atol=1e-5)


def recorder(module):
    seen = []
    handle = module.register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach().clone()))
    return seen, handle


def test_plain_methods_evaluate_the_backbone_itself():
    method, _ = build("jigsaw", n=2)
    assert method.feature_encoder() is method.backbone
    assert METHODS["simclr"].input_adapter(method.cfg) is None


def test_colorization_knn_features_come_from_the_grey_input_training_uses():
    method, _ = build("colorization", n=2)
    method.eval()
    cfg, x = method.cfg, images()
    views = ViewGenerator(cfg.augment, cfg.data.image_size)
    seen, _ = recorder(method.backbone)
    feats = extract_features(method.feature_encoder(), x, views.eval_views, device="cpu", batch_size=4)
    fed = torch.cat(seen)
    assert fed.shape == (6, 3, 32, 32) and is_grey(fed, cfg)
    want, _ = grey_input(denormalise(views.eval_views(x), cfg), cfg)    # what training_step builds
    assert torch.allclose(fed, want, atol=1e-5)
    assert torch.allclose(feats, method.backbone(want), atol=1e-5)
    assert torch.allclose(method.embed(views.eval_views(x))[0], feats, atol=1e-5)
    assert not method.backbone.training                                  # the mode is kept


def test_colorization_knn_checkpoint_evaluation_sees_grey_images(tmp_path, monkeypatch):
    run = make_run(tmp_path, method={"name": "colorization"}, model={"backbone": "tiny_cnn"},
                   data={"synthetic_train_size": 64, "synthetic_test_size": 32})
    import backend.evaluate as evaluate
    fed, real = [], evaluate.extract_features

    def spy(encoder, *args, **kwargs):
        seen, handle = recorder(encoder[-1])
        try:
            return real(encoder, *args, **kwargs)
        finally:
            handle.remove()
            fed.extend(seen)

    monkeypatch.setattr(evaluate, "extract_features", spy)
    result = evaluate_knn_checkpoint(run, random_init=True, record=False)
    assert 0.0 <= result["top1"] <= 1.0 and fed
    cfg = read_run_config(run)
    assert all(is_grey(x, cfg) for x in fed)


def test_cmc_features_are_its_two_encoders_on_l_and_ab():
    method, views = build("cmc", n=3)
    method.eval()
    l_seen, _ = recorder(method.backbone.l_encoder)
    ab_seen, _ = recorder(method.backbone.ab_encoder)
    feats = method.feature_encoder()(views[0])
    assert feats.shape == (3, method.feature_dim)
    assert torch.allclose(l_seen[0][:, 0], l_seen[0][:, 1]) and (ab_seen[0][:, 2] == 0).all()


def test_colorization_export_converts_to_grey_and_reloads(tmp_path):
    method, _ = build("colorization", n=2)
    method.eval()
    cfg = method.cfg
    encoder = from_method(method, cfg)
    assert "GreyInput" in encoder.metadata["input"]
    assert not any(k.startswith("adapter") for k in encoder.state_dict())   # the backbone's keys only
    x01 = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    grey, _ = grey_input(x01, cfg)
    with torch.no_grad():
        want = method.backbone(grey)
        assert torch.allclose(encoder(x01), want, atol=1e-5)
        path = tmp_path / "encoder.safetensors"
        write_safetensors(encoder, path, encoder.metadata, x01)
        assert torch.allclose(load_safetensors(path, "cpu")(x01), want, atol=1e-5)
