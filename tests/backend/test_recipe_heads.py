"""Head options the cited sources need: MoCo v2 without projector BN, MoCo v3 predictor without
output bias, SimCLR output BN, SimSiam's affine output BN, DINO's BN head (lightly), as the presets
build them; defaults keep the heads of earlier runs."""

from torch import nn

from backend.config import ExperimentConfig, load_preset
from backend.methods import load_methods


def _build(cfg):
    return load_methods()[cfg.method.name](cfg)


def _small(name, **method):
    return ExperimentConfig.from_dict({"model": {"backbone": "tiny_cnn"}, "method": {"name": name, **method}})


def _bns(module):
    return [m for m in module.modules() if isinstance(m, nn.BatchNorm1d)]


def test_moco_projector_bn_option():
    assert _bns(_build(_small("moco")).projector)  # default: BN in the hidden layer (earlier runs)
    head = _build(_small("moco", projector_bn=False)).projector
    assert not _bns(head) and [type(m) for m in head] == [nn.Linear, nn.ReLU, nn.Linear]
    assert all(m.bias is not None for m in head if isinstance(m, nn.Linear))
    assert load_preset("moco").method.projector_bn is False


def test_mocov3_predictor_output_bias_option():
    assert _build(_small("mocov3")).predictor[-1].bias is not None
    pred = _build(_small("mocov3", predictor_bias=False)).predictor
    assert all(m.bias is None for m in pred.modules() if isinstance(m, nn.Linear))


def test_simclr_projector_output_bn_option():
    assert not isinstance(_build(_small("simclr")).projector[-1], nn.BatchNorm1d)
    head = _build(_small("simclr", projector_last_bn=True)).projector
    assert isinstance(head[-1], nn.BatchNorm1d) and head[-2].bias is None


def test_simsiam_output_bn_affine_option():
    assert not _build(_small("simsiam")).projector[-1].affine  # official: affine=False
    assert _build(_small("simsiam", projector_last_bn_affine=True)).projector[-1].affine  # lightly


def test_dino_head_batch_norm_option():
    assert not _bns(_build(_small("dino", out_dim=64)).projector)
    head = _build(_small("dino", out_dim=64, head_batch_norm=True)).projector
    kinds = [type(m) for m in head.mlp]
    assert kinds[:3] == [nn.Linear, nn.BatchNorm1d, nn.GELU]


def test_moco_split_query_bn_normalises_each_group_of_interleaved_rows_on_its_own():
    import torch
    from backend.models.split_batch_norm import all_split
    cfg = _small("moco", bn_splits=4, split_query_bn=True)
    method = _build(cfg).train()
    assert all_split([method.backbone, method.key_backbone])  # one pass for all groups
    x = torch.randn(32, 3, 32, 32)
    expected = torch.empty(32, cfg.model.projector_out_dim)
    for g in range(4):  # group g = rows g, g + 4, ...; plain BN over each group alone
        expected[g::4] = method.projector(method.backbone(x[g::4]))
    assert torch.allclose(method.queries(x), expected, atol=1e-5)
    assert not torch.allclose(method.queries(x), method.projector(method.backbone(x)), atol=1e-3)
    plain = _build(_small("moco")).train()
    assert plain.bn_groups() == 4 and not plain.cfg.method.split_query_bn
