"""Throughput of the SimCLR training step: our data path vs the usual baseline, in the same run.

Ours: images decoded once into a uint8 tensor (resident on the device), two views drawn per batch
by backend.data.augment on the device. Baseline: torchvision.transforms.v2 on PIL images in a
DataLoader (num_workers processes), the pipeline most SSL code uses. Both feed the same
SimCLR model step (forward, NT-Xent, backward, SGD). Prints img/s of the data path alone and of
the full step.

    python benchmarks/throughput.py                       # CPU here: tiny_cnn and resnet18, batch 256
    python benchmarks/throughput.py --device cuda --backbones resnet18 --batch 512 --steps 50
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backend.config import ExperimentConfig  # noqa: E402
from backend.data.augment import ViewGenerator  # noqa: E402
from backend.data.sources import load_dataset  # noqa: E402
from backend.devices import autocast_dtype, resolve_device  # noqa: E402
from backend.methods import METHODS  # noqa: E402
from backend.optim import build_optimizer  # noqa: E402

CIFAR = ROOT.parent / "shared" / "data" / "cifar10"


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class PilPairs(torch.utils.data.Dataset):
    """The baseline: PIL images through torchvision.transforms.v2, two views per item."""

    def __init__(self, images_uint8, cfg: ExperimentConfig):
        from torchvision.transforms import v2

        a = cfg.augment
        self.images = images_uint8.permute(0, 2, 3, 1).numpy()
        self.transform = v2.Compose([
            v2.RandomResizedCrop(cfg.data.image_size, scale=tuple(a.crop_scale), ratio=tuple(a.crop_ratio)),
            v2.RandomHorizontalFlip(a.hflip_prob),
            v2.RandomApply([v2.ColorJitter(a.brightness, a.contrast, a.saturation, a.hue)], p=a.jitter_prob),
            v2.RandomGrayscale(a.grayscale_prob),
            v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(a.mean, a.std)])

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        from PIL import Image

        img = Image.fromarray(self.images[i])
        return self.transform(img), self.transform(img)


def ours_batches(images, views, batch, device, steps):
    """Yield two-view batches from the uint8 cache, augmented on the device."""
    images = images.to(device)
    gen = torch.Generator().manual_seed(0)
    for s in range(steps):
        idx = torch.randint(0, images.shape[0], (batch,), generator=gen).to(device)
        yield views(images[idx], generator=gen)[:2]


def baseline_batches(images, cfg, batch, device, steps, workers):
    """Yield two-view batches from the PIL/torchvision DataLoader baseline."""
    loader = torch.utils.data.DataLoader(PilPairs(images, cfg), batch_size=batch, shuffle=True,
                                         num_workers=workers, drop_last=True, persistent_workers=False,
                                         pin_memory=device.type == "cuda")
    produced = 0
    while produced < steps:
        batches = iter(loader)
        try:
            for v1, v2 in batches:
                yield v1.to(device, non_blocking=True), v2.to(device, non_blocking=True)
                produced += 1
                if produced >= steps:
                    return
        finally:
            del batches  # stop the worker processes now, not when garbage collection gets to them
            gc.collect()


def measure(batches, step, device, batch, warmup=2) -> float:
    """img/s over the batches after ``warmup`` (each image counted once, with its two views)."""
    it = iter(batches)
    for _ in range(warmup):
        step(*next(it))
    _sync(device)
    t0, n = time.perf_counter(), 0
    for pair in it:
        step(*pair)
        n += batch
    _sync(device)
    return n / (time.perf_counter() - t0)


def measure_batch(batch: int, args, cfg, data, views, device) -> list[tuple]:
    """(what, backbone, batch, baseline img/s, ours img/s) rows: the data path alone, then the
    SimCLR step per backbone, at one batch size."""
    steps = args.steps + 2
    noop = lambda a, b: None  # noqa: E731
    ours = measure(ours_batches(data.images, views, batch, device, steps), noop, device, batch)
    rows = [("data path only", "-", batch,
             measure(baseline_batches(data.images, cfg, batch, device, steps, args.workers), noop, device, batch),
             ours)]
    for backbone in args.backbones.split(","):
        bcfg = cfg.updated({"model": {"backbone": backbone}, "optim": {"batch_size": batch}})
        method = METHODS["simclr"](bcfg).to(device).train()
        channels_last = not backbone.startswith("vit")  # as the trainer does, on every device
        if channels_last:
            method = method.to(memory_format=torch.channels_last)
        opt = build_optimizer(method, bcfg, fused=device.type == "cuda")
        amp = autocast_dtype("auto", device)

        def step(v1, v2, method=method, opt=opt, amp=amp, channels_last=channels_last):
            if channels_last:
                v1, v2 = (v.contiguous(memory_format=torch.channels_last) for v in (v1, v2))
            with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
                loss = method.training_step([v1, v2], None, 0.0).loss
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        ours = measure(ours_batches(data.images, views, batch, device, steps), step, device, batch)
        rows.append(("SimCLR step", backbone, batch,
                     measure(baseline_batches(data.images, cfg, batch, device, steps, args.workers), step, device,
                             batch), ours))
        if device.type == "cuda":
            rows[-1] += (torch.cuda.max_memory_allocated(device) / 2**30,)
            torch.cuda.reset_peak_memory_stats(device)
        del method, opt
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--backbones", default="tiny_cnn,resnet18")
    parser.add_argument("--batch", default="256", help="batch size, or a comma list for a scaling table")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--images", type=int, default=5000, help="images in the cache/baseline data set")
    args = parser.parse_args(argv)

    device = resolve_device(args.device)
    batches = [int(b) for b in str(args.batch).split(",")]
    source = f"imagefolder:{CIFAR}" if CIFAR.is_dir() else "synthetic"
    base = {"data": {"source": source, "train_limit": args.images, "synthetic_train_size": args.images},
            "optim": {"batch_size": batches[0]}, "runtime": {"device": str(device)}}
    cfg = ExperimentConfig.from_dict(base)
    data = load_dataset(cfg.data, "train")
    views = ViewGenerator(cfg.augment, cfg.data.image_size)
    print(f"device {device}, data {source} ({len(data)} images), batch {args.batch}, {args.steps} timed steps, "
          f"torch threads {torch.get_num_threads()}, baseline workers {args.workers}")
    rows = []
    for batch in batches:
        rows += measure_batch(batch, args, cfg, data, views, device)

    print(f"\n| {'what':<16} | {'backbone':<9} | {'batch':>5} | {'baseline img/s':>14} | {'ours img/s':>10} | "
          f"{'speed-up':>8} |" + (" peak GPU GiB |" if device.type == "cuda" else ""))
    print(f"|{'-' * 18}|{'-' * 11}|{'-' * 7}|{'-' * 16}|{'-' * 12}|{'-' * 10}|" + ("-" * 14 + "|" if device.type == "cuda" else ""))
    for what, backbone, batch, baseline, ours, *mem in rows:
        extra = f" {mem[0]:>12.1f} |" if mem else ("" if device.type != "cuda" else f" {'':>12} |")
        print(f"| {what:<16} | {backbone:<9} | {batch:>5} | {baseline:>14.0f} | {ours:>10.0f} | "
              f"{ours / baseline:>7.2f}x |" + extra)


if __name__ == "__main__":
    main()
