"""Training-step throughput of SimCLR, BYOL and DINO: the workbench vs the lightly package, in the same run.

Each method is timed three ways on the same images, backbone, batch and head sizes (from the
method's preset, heads capped by --head-dim):

* ours      - the workbench's path: uint8 images resident on the device, views drawn by
              backend.data.augment on the device, the method's own training step and EMA update.
* baseline  - torchvision.transforms.v2 on PIL images in a DataLoader feeding the same workbench step
              (benchmarks/throughput.py's baseline).
* lightly   - lightly's own pipeline: its SimCLR/BYOL/DINO transforms on PIL images in a DataLoader,
              its projection/prediction heads and losses and its momentum update, on the same backbone
              module. lightly is a peer here, installed only for this benchmark and never imported by
              the workbench:

    pip install --no-deps --target /tmp/lightly-peer lightly==1.6.0 lightning-utilities
    PYTHONPATH=/tmp/lightly-peer python benchmarks/peer_lightly.py
    PYTHONPATH=/tmp/lightly-peer python benchmarks/peer_lightly.py --device cuda --backbone resnet18 --batch 512

img/s counts each source image once (with all its views), after two warm-up steps.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from backend.config import ExperimentConfig, deep_merge, preset_dict  # noqa: E402
from backend.data.augment import ViewGenerator  # noqa: E402
from backend.data.sources import load_dataset  # noqa: E402
from backend.devices import autocast_dtype, resolve_device  # noqa: E402
from backend.methods import METHODS  # noqa: E402
from backend.models.backbones import build_backbone  # noqa: E402
from backend.optim import build_optimizer  # noqa: E402
from throughput import CIFAR, baseline_batches, measure, ours_batches  # noqa: E402

METHOD_NAMES = ("simclr", "byol", "dino")


def method_config(name: str, args, source: str) -> ExperimentConfig:
    """The method's preset on the shared data/backbone/batch, heads capped at --head-dim."""
    cfg = preset_dict(name)
    for key in ("projector_hidden_dim", "projector_out_dim", "predictor_hidden_dim"):
        if key in cfg.get("model", {}):
            cfg["model"][key] = min(cfg["model"][key], args.head_dim)
    if name == "dino":
        cfg["method"]["out_dim"] = min(cfg["method"]["out_dim"], args.head_dim)
    shared = {"data": {"source": source, "train_limit": args.images, "synthetic_train_size": args.images},
              "model": {"backbone": args.backbone},
              "optim": {"batch_size": args.batch}, "runtime": {"device": args.device}}
    return ExperimentConfig.from_dict(deep_merge(cfg, shared))


class PilViews(torch.utils.data.Dataset):
    """PIL images through a lightly transform that returns a list of views."""

    def __init__(self, images_uint8, transform):
        self.images = images_uint8.permute(0, 2, 3, 1).numpy()
        self.transform = transform

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        from PIL import Image

        return self.transform(Image.fromarray(self.images[i]))


def lightly_batches(images, transform, batch, device, steps, workers):
    """Yield lists of view batches from lightly's transform in a DataLoader."""
    loader = torch.utils.data.DataLoader(PilViews(images, transform), batch_size=batch, shuffle=True,
                                         num_workers=workers, drop_last=True,
                                         pin_memory=device.type == "cuda")
    produced = 0
    while produced < steps:
        for views in loader:
            yield tuple(v.to(device, non_blocking=True) for v in views)
            produced += 1
            if produced >= steps:
                return


def lightly_setup(name: str, cfg: ExperimentConfig):
    """(transform, trainable modules, EMA copy or None, loss of two views, after-step hook), all
    built from lightly's own modules."""
    from lightly import transforms as LT
    from lightly.loss import DINOLoss, NegativeCosineSimilarity, NTXentLoss
    from lightly.models import modules as LM
    from lightly.models.utils import update_momentum

    size, m, a = cfg.data.image_size, cfg.model, cfg.augment
    norm = {"mean": list(a.mean), "std": list(a.std)}
    backbone, feat = build_backbone(cfg.model.backbone, size)
    if name == "simclr":
        # cj_strength 0.5 as lightly's CIFAR-10 benchmark (the preset's source) sets it, not the
        # transform's default 1.0 (jitter 0.8/0.8/0.8/0.2): with that default lightly scored 0.04
        # below us, and on our views (peers.py --lightly-views ours) level with us.
        transform = LT.SimCLRTransform(input_size=size, cj_strength=0.5, gaussian_blur=0.0, min_scale=a.crop_scale[0],
                                       normalize=norm)
        head = LM.SimCLRProjectionHead(feat, m.projector_hidden_dim, m.projector_out_dim)
        model = nn.ModuleDict({"backbone": backbone, "head": head})
        criterion = NTXentLoss(temperature=cfg.method.temperature)

        def loss_fn(v0, v1, progress):
            z0, z1 = head(backbone(v0).flatten(1)), head(backbone(v1).flatten(1))
            return criterion(z0, z1)
        return transform, model, None, loss_fn, lambda progress: None

    if name == "byol":
        transform = LT.BYOLTransform(
            view_1_transform=LT.BYOLView1Transform(input_size=size, gaussian_blur=0.0, normalize=norm),
            view_2_transform=LT.BYOLView2Transform(input_size=size, gaussian_blur=0.0, normalize=norm))
        head = LM.BYOLProjectionHead(feat, m.projector_hidden_dim, m.projector_out_dim)
        predictor = LM.BYOLPredictionHead(m.projector_out_dim, m.predictor_hidden_dim, m.projector_out_dim)
        model = nn.ModuleDict({"backbone": backbone, "head": head, "predictor": predictor})
        target = copy.deepcopy(nn.ModuleDict({"backbone": backbone, "head": head})).requires_grad_(False)
        criterion = NegativeCosineSimilarity()

        def loss_fn(v0, v1, progress):
            p0, p1 = (predictor(head(backbone(v).flatten(1))) for v in (v0, v1))
            with torch.no_grad():
                t0, t1 = (target["head"](target["backbone"](v).flatten(1)) for v in (v0, v1))
            return 0.5 * (criterion(p0, t1) + criterion(p1, t0))

        def after_step(progress):
            update_momentum(backbone, target["backbone"], cfg.method.momentum)
            update_momentum(head, target["head"], cfg.method.momentum)
        return transform, model, target, loss_fn, after_step

    if name == "dino":
        # As lightly's CIFAR-10 benchmark (the preset's source) sets them: solarisation 0.2 on the
        # second global view (the transform's default) and batch norm in the head (its default: none).
        transform = LT.DINOTransform(global_crop_size=size, global_crop_scale=tuple(a.crop_scale), n_local_views=0,
                                     gaussian_blur=(0.0, 0.0, 0.0), normalize=norm)
        def dino_head():
            return LM.DINOProjectionHead(feat, m.projector_hidden_dim, m.projector_out_dim, cfg.method.out_dim,
                                         batch_norm=cfg.method.head_batch_norm, freeze_last_layer=1)
        head = dino_head()
        model = nn.ModuleDict({"backbone": backbone, "head": head})
        # The head's weight-normed layer cannot be deep-copied: build the teacher's and copy weights.
        teacher = nn.ModuleDict({"backbone": copy.deepcopy(backbone), "head": dino_head()})
        teacher.load_state_dict(model.state_dict())
        teacher.requires_grad_(False)
        criterion = DINOLoss(output_dim=cfg.method.out_dim, warmup_teacher_temp_epochs=0,
                             teacher_temp=cfg.method.teacher_temp, student_temp=cfg.method.student_temp)

        def loss_fn(v0, v1, progress):
            student = [head(backbone(v).flatten(1)) for v in (v0, v1)]
            with torch.no_grad():
                teach = [teacher["head"](teacher["backbone"](v).flatten(1)) for v in (v0, v1)]
            return criterion(teach, student, epoch=1)

        def after_step(progress):
            update_momentum(model, teacher, cfg.method.momentum)
        return transform, model, teacher, loss_fn, after_step
    raise ValueError(name)


def make_step(loss_fn, params_module, cfg, device, after_step, channels_last: bool, before_step=None):
    """One optimisation step of ``loss_fn`` on a pair of views, with the workbench's AMP setting."""
    opt = build_optimizer(params_module, cfg, fused=device.type == "cuda")
    amp = autocast_dtype("auto", device)

    def step(*views):
        if channels_last:
            views = tuple(v.contiguous(memory_format=torch.channels_last) for v in views)
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            loss = loss_fn(*views[:2], 0.0)
        loss.backward()
        if before_step is not None:
            before_step(0.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        after_step(0.0)
    return step


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--backbone", default="tiny_cnn")
    parser.add_argument("--methods", default=",".join(METHOD_NAMES))
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--head-dim", type=int, default=2048, help="cap on projector/predictor/prototype sizes")
    args = parser.parse_args(argv)
    try:
        import lightly  # noqa: F401
    except ImportError:
        sys.exit("lightly is not importable: install it for this benchmark only (see this file's docstring)")

    device = resolve_device(args.device)
    args.device = str(device)
    source = f"imagefolder:{CIFAR}" if CIFAR.is_dir() else "synthetic"
    images = None
    channels_last = backbone_is_cnn = not args.backbone.startswith("vit")
    print(f"device {device}, data {source} ({args.images} images), backbone {args.backbone}, batch {args.batch}, "
          f"{args.steps} timed steps, torch threads {torch.get_num_threads()}, loader workers {args.workers}, "
          f"lightly {lightly.__version__}")
    rows = []
    for name in args.methods.split(","):
        cfg = method_config(name, args, source)
        if images is None:
            images = load_dataset(cfg.data, "train").images
        torch.manual_seed(0)
        method = METHODS[name](cfg).to(device).train()
        if backbone_is_cnn:
            method = method.to(memory_format=torch.channels_last)

        def our_loss(v1, v2, progress, method=method):
            return method.training_step([v1, v2], None, progress).loss

        step = make_step(our_loss, method, cfg, device, method.after_optimizer_step, channels_last,
                         before_step=method.before_optimizer_step)
        views = ViewGenerator(cfg.augment, cfg.data.image_size)
        ours = measure(ours_batches(images, views, args.batch, device, args.steps + 2), step, device, args.batch)
        base = measure(baseline_batches(images, cfg, args.batch, device, args.steps + 2, args.workers), step, device,
                       args.batch)
        transform, model, ema_copy, loss_fn, after = lightly_setup(name, cfg)
        for module in (model, ema_copy):
            if module is not None:
                module.to(device, memory_format=torch.channels_last if backbone_is_cnn else torch.preserve_format)
        lstep = make_step(loss_fn, model, cfg, device, after, channels_last)
        peer = measure(lightly_batches(images, transform, args.batch, device, args.steps + 2, args.workers), lstep,
                       device, args.batch)
        rows.append((name, ours, base, peer))
        print(f"  {name}: ours {ours:.0f}, baseline {base:.0f}, lightly {peer:.0f} img/s", flush=True)

    print(f"\n| {'method':<7} | {'ours img/s':>10} | {'torchvision baseline':>20} | {'lightly 1.6':>11} | "
          f"{'ours / lightly':>14} |")
    print(f"|{'-' * 9}|{'-' * 12}|{'-' * 22}|{'-' * 13}|{'-' * 16}|")
    for name, ours, base, peer in rows:
        print(f"| {name:<7} | {ours:>10.0f} | {base:>20.0f} | {peer:>11.0f} | {ours / peer:>13.2f}x |")


if __name__ == "__main__":
    main()
