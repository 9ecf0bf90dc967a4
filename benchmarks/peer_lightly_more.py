"""lightly's own training pipelines for MoCo v2, SimSiam, Barlow Twins, VICReg and SwAV (benchmark peer).

Each ``setup(name, cfg)`` follows the structure of lightly's ``examples/pytorch/<method>.py`` (its
transform, projection/prediction heads, loss, prototypes and momentum update; MoCo v2's loss is
symmetric, with split batch norm and shuffled keys, as in lightly's CIFAR-10 benchmark, the
preset's cited source), with the sizes and
loss weights taken from the workbench config so both sides train the same-sized model. It returns
the same tuple as :func:`peer_lightly.lightly_setup`: (transform, trainable modules, EMA copy or
None, loss of two views and the progress in [0, 1], after-step hook taking the progress).
lightly is imported lazily: it is installed only for the benchmarks, never for the workbench.
"""

from __future__ import annotations

import copy

from torch import nn
from torch.nn import functional as F

from backend.models.backbones import build_backbone

METHOD_NAMES = ("moco", "simsiam", "barlow_twins", "vicreg", "swav")


def _common(cfg):
    """Keyword arguments of lightly's single-resolution transforms from the workbench's augment section."""
    a = cfg.augment
    return {"input_size": cfg.data.image_size, "min_scale": a.crop_scale[0], "gaussian_blur": 0.0,
            "normalize": {"mean": list(a.mean), "std": list(a.std)}}


def _split_batch_norm(module: nn.Module, splits: int) -> nn.Module:
    """``module`` with every BatchNorm2d replaced by lightly's SplitBatchNorm in ``splits``
    groups (its affine parameters kept): the BN guard of lightly's CIFAR-10 benchmark
    (``ResNetGenerator(num_splits=8)``) on any backbone."""
    from lightly.models.batchnorm import SplitBatchNorm

    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            split = SplitBatchNorm(child.num_features, splits)
            split.weight.data.copy_(child.weight.data)
            split.bias.data.copy_(child.bias.data)
            setattr(module, name, split)
        else:
            _split_batch_norm(child, splits)
    return module


def _moco(cfg, backbone, feat):
    from lightly.loss import NTXentLoss
    from lightly.models.modules import MoCoProjectionHead
    from lightly.models.utils import batch_shuffle, batch_unshuffle, update_momentum
    from lightly.transforms import MoCoV2Transform

    m, meth = cfg.model, cfg.method
    shuffle = meth.shuffle_bn  # the benchmark's guard: split BN for both encoders, keys shuffled
    if shuffle:
        backbone = _split_batch_norm(backbone, meth.bn_splits)
    head = MoCoProjectionHead(feat, m.projector_hidden_dim, m.projector_out_dim)
    model = nn.ModuleDict({"backbone": backbone, "head": head})
    key = copy.deepcopy(model).requires_grad_(False)
    # MoCo v2 = InfoNCE against a FIFO of past keys: lightly's NTXentLoss with a memory bank.
    criterion = NTXentLoss(temperature=meth.temperature, memory_bank_size=(meth.queue_size, m.projector_out_dim))
    final = getattr(meth, "momentum_final", meth.momentum)

    def one_way(q_view, k_view):
        query = head(backbone(q_view).flatten(1))
        if shuffle:
            k_view, order = batch_shuffle(k_view)
        keys = key["head"](key["backbone"](k_view).flatten(1)).detach()
        if shuffle:
            keys = batch_unshuffle(keys, order)
        return criterion(query, keys)

    def loss_fn(v0, v1, progress):
        # Symmetric, as the preset's cited source (lightly's CIFAR-10 benchmark, MocoModel) has it:
        # each view is the query once and the key once, so both sides do the same network work.
        # (lightly's examples/pytorch/moco.py is one-way: half the passes per image, and plain BN.)
        return 0.5 * (one_way(v0, v1) + one_way(v1, v0))

    def after_step(progress):
        from lightly.utils.scheduler import cosine_schedule

        update_momentum(model, key, cosine_schedule(int(progress * 1000), 1000, meth.momentum, final))
    return MoCoV2Transform(**_common(cfg)), model, key, loss_fn, after_step


def _simsiam(cfg, backbone, feat):
    from lightly.loss import NegativeCosineSimilarity
    from lightly.models.modules import SimSiamPredictionHead, SimSiamProjectionHead
    from lightly.transforms import SimSiamTransform

    m = cfg.model
    head = SimSiamProjectionHead(feat, m.projector_hidden_dim, m.projector_out_dim)
    predictor = SimSiamPredictionHead(m.projector_out_dim, m.predictor_hidden_dim, m.projector_out_dim)
    model = nn.ModuleDict({"backbone": backbone, "head": head, "predictor": predictor})
    criterion = NegativeCosineSimilarity()

    def loss_fn(v0, v1, progress):
        z0, z1 = head(backbone(v0).flatten(1)), head(backbone(v1).flatten(1))
        p0, p1 = predictor(z0), predictor(z1)
        # stop-gradient on the projections, as in lightly's example (z detached in forward)
        return 0.5 * (criterion(p0, z1.detach()) + criterion(p1, z0.detach()))
    return SimSiamTransform(**_common(cfg)), model, None, loss_fn, lambda progress: None


def _barlow_twins(cfg, backbone, feat):
    from lightly.loss import BarlowTwinsLoss
    from lightly.models.modules import BarlowTwinsProjectionHead
    from lightly.transforms import BYOLTransform, BYOLView1Transform, BYOLView2Transform

    m, c = cfg.model, _common(cfg)
    head = BarlowTwinsProjectionHead(feat, m.projector_hidden_dim, m.projector_out_dim)
    model = nn.ModuleDict({"backbone": backbone, "head": head})
    criterion = BarlowTwinsLoss(lambda_param=cfg.method.barlow_lambda)
    transform = BYOLTransform(
        view_1_transform=BYOLView1Transform(**c), view_2_transform=BYOLView2Transform(**c))

    scale = cfg.method.barlow_scale  # solo-learn's loss scale (0.1), which the preset follows: with
    # LARS the scale moves the balance of gradient and weight decay in the trust ratio

    def loss_fn(v0, v1, progress):
        return scale * criterion(head(backbone(v0).flatten(1)), head(backbone(v1).flatten(1)))
    return transform, model, None, loss_fn, lambda progress: None


def _vicreg(cfg, backbone, feat):
    from lightly.loss import VICRegLoss
    from lightly.models.modules.heads import VICRegProjectionHead
    from lightly.transforms import VICRegTransform

    m, meth = cfg.model, cfg.method
    head = VICRegProjectionHead(feat, m.projector_hidden_dim, m.projector_out_dim,
                                num_layers=max(2, getattr(m, "projector_layers", 2)))
    model = nn.ModuleDict({"backbone": backbone, "head": head})
    criterion = VICRegLoss(lambda_param=meth.sim_weight, mu_param=meth.var_weight, nu_param=meth.cov_weight)

    def loss_fn(v0, v1, progress):
        return criterion(head(backbone(v0).flatten(1)), head(backbone(v1).flatten(1)))
    return VICRegTransform(**_common(cfg)), model, None, loss_fn, lambda progress: None


def _swav(cfg, backbone, feat):
    from lightly.loss import SwaVLoss
    from lightly.models.modules import SwaVProjectionHead, SwaVPrototypes
    from lightly.transforms import SwaVTransform

    m, meth, a = cfg.model, cfg.method, cfg.augment
    head = SwaVProjectionHead(feat, m.projector_hidden_dim, m.projector_out_dim)
    prototypes = SwaVPrototypes(m.projector_out_dim, n_prototypes=meth.out_dim,
                                n_steps_frozen_prototypes=meth.freeze_prototypes_steps)
    model = nn.ModuleDict({"backbone": backbone, "head": head, "prototypes": prototypes})
    criterion = SwaVLoss(temperature=meth.temperature, sinkhorn_iterations=meth.sinkhorn_iterations,
                         sinkhorn_epsilon=meth.sinkhorn_epsilon)
    # Two global crops at the dataset's size (the workbench's swav preset trains no local crops).
    transform = SwaVTransform(crop_sizes=(cfg.data.image_size,), crop_counts=(2,),
                              crop_min_scales=(a.crop_scale[0],), crop_max_scales=(a.crop_scale[1],),
                              gaussian_blur=0.0, normalize={"mean": list(a.mean), "std": list(a.std)})
    step = {"n": 0}

    def loss_fn(v0, v1, progress):
        prototypes.normalize()
        scores = [prototypes(F.normalize(head(backbone(v).flatten(1)), dim=1), step["n"]) for v in (v0, v1)]
        return criterion(scores, [])

    def after_step(progress):
        step["n"] += 1
    return transform, model, None, loss_fn, after_step


_SETUPS = {"moco": _moco, "simsiam": _simsiam, "barlow_twins": _barlow_twins, "vicreg": _vicreg, "swav": _swav}


def setup(name: str, cfg):
    """lightly's pipeline for ``name`` (one of METHOD_NAMES) on a fresh backbone from ``cfg``."""
    if name not in _SETUPS:
        raise ValueError(f"no lightly pipeline for {name!r} here; this module covers {', '.join(METHOD_NAMES)}")
    backbone, feat = build_backbone(cfg.model.backbone, cfg.data.image_size)
    return _SETUPS[name](cfg, backbone, feat)
