"""Batched, per-sample-random view generation (SimCLR / MoCo v2 / BYOL / DINO multi-crop).

The whole uint8 batch ``(B, 3, H, W)`` is augmented at once on the device it lives on, each sample
with its own random parameters. Parameters are drawn on the CPU from a ``torch.Generator`` so a
seed gives the same views on every device and a resumed run continues exactly.

The pipeline per view, in this order (as in SimCLR and MoCo v2):

1. random resized crop + horizontal flip: one ``grid_sample`` with per-sample sampling grids.
   Sampling points are those of ``F.interpolate(mode="bilinear", align_corners=False,
   antialias=False)`` on the crop, clamped to the crop's own border, so the result equals
   torchvision's ``resized_crop(..., antialias=False)`` followed by ``hflip``;
2. colour jitter (brightness, contrast, saturation, hue, per-sample random order), with
   probability ``jitter_prob``; formulas of ``torchvision.transforms.v2.functional.adjust_*``;
3. random grayscale (ITU-R 601-2 luma, 3 channels);
4. gaussian blur with std ``sigma`` px, as PIL's ``ImageFilter.GaussianBlur(radius=sigma)`` that the
   MoCo v2/v3, SimSiam, BYOL/solo-learn, lightly and DINO pipelines use: an untruncated gaussian
   (kernel radius ceil(3 * sigma)), edge pixels repeated. Not SimCLR's kernel of ~10% of the side,
   which equals this at 224 px but truncates it to 3 taps at 32 px;
5. solarisation (``x >= threshold -> 1 - x``);
6. normalisation with per-channel mean/std (``ViewGenerator`` only).

Images become float32 in [0, 1] once, before cropping, and are never re-quantised in between
(torchvision on uint8 rounds after every op; on float input the two agree to float precision).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from ..config_augment import resolved_view, view_table_for

__all__ = ["ViewParams", "ViewGenerator", "sample_view_params", "apply_view", "gaussian_kernel_size"]

_LUMA = (0.2989, 0.587, 0.114)  # torchvision's rgb_to_grayscale weights


@dataclass
class ViewParams:
    """Per-sample parameters of one view; every field has leading dimension B.

    ``boxes`` rows are (top, left, height, width) of the crop in source pixels (whole numbers
    stored as floats). ``jitter_order`` rows are permutations of 0 brightness, 1 contrast,
    2 saturation, 3 hue. ``hue`` is a shift in [-0.5, 0.5] turns of the colour wheel.
    """

    boxes: Tensor
    flip: Tensor
    jitter: Tensor
    brightness: Tensor
    contrast: Tensor
    saturation: Tensor
    hue: Tensor
    jitter_order: Tensor
    grayscale: Tensor
    blur: Tensor
    sigma: Tensor
    solarize: Tensor

    def to(self, device) -> "ViewParams":
        """A copy with every tensor on ``device`` (the same tensors when already there)."""
        non_blocking = torch.device(device).type != "cpu"  # device-to-host copies must block
        return ViewParams(**{f.name: getattr(self, f.name).to(device, non_blocking=non_blocking)
                             for f in fields(self)})

    def __len__(self) -> int:
        """Number of samples B."""
        return self.boxes.shape[0]


def _uniform(n: int, low: float, high: float, generator) -> Tensor:
    """n float64 samples uniform in [low, high) from ``generator`` (CPU)."""
    return torch.rand(n, dtype=torch.float64, generator=generator) * (high - low) + low


def _sample_boxes(batch_size: int, height: int, width: int, scale, ratio, generator) -> Tensor:
    """RandomResizedCrop boxes for a batch: the 10 attempts of torchvision, vectorised."""
    attempts = 10
    area = float(height * width)
    target_area = area * (torch.rand(batch_size, attempts, dtype=torch.float64, generator=generator)
                          * (scale[1] - scale[0]) + scale[0])
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(torch.rand(batch_size, attempts, dtype=torch.float64, generator=generator)
                       * (log_hi - log_lo) + log_lo)
    w = torch.round(torch.sqrt(target_area * aspect))  # torch.round, like Python's, is half-to-even
    h = torch.round(torch.sqrt(target_area / aspect))
    ok = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = ok.to(torch.uint8).argmax(dim=1, keepdim=True)  # first successful attempt (0 if none)
    w = w.gather(1, first).squeeze(1)
    h = h.gather(1, first).squeeze(1)
    found = ok.any(dim=1)

    # Fallback: centre crop of the whole image clipped to the allowed aspect ratios.
    in_ratio = width / height
    if in_ratio < min(ratio):
        fw, fh = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        fw, fh = int(round(height * max(ratio))), height
    else:
        fw, fh = width, height
    w = torch.where(found, w, torch.full_like(w, fw))
    h = torch.where(found, h, torch.full_like(h, fh))

    # Offsets uniform over the valid positions (torch.randint(0, H - h + 1) per sample).
    u_top = torch.rand(batch_size, dtype=torch.float64, generator=generator)
    u_left = torch.rand(batch_size, dtype=torch.float64, generator=generator)
    top = torch.minimum(torch.floor(u_top * (height - h + 1)), height - h)
    left = torch.minimum(torch.floor(u_left * (width - w + 1)), width - w)
    top = torch.where(found, top, torch.full_like(top, (height - fh) // 2))
    left = torch.where(found, left, torch.full_like(left, (width - fw) // 2))
    return torch.stack((top, left, h, w), dim=1).float()


def sample_view_params(batch_size: int, height: int, width: int, *, scale, ratio, hflip_prob: float,
                       jitter_prob: float, brightness: float, contrast: float, saturation: float,
                       hue: float, grayscale_prob: float, blur_prob: float, blur_sigma,
                       solarize_prob: float, generator: torch.Generator | None = None) -> ViewParams:
    """Draw independent view parameters for ``batch_size`` samples of a ``height`` x ``width`` source.

    Everything is drawn on the CPU (from ``generator``, or torch's global CPU generator when None),
    so the same seed gives the same parameters on every device. Distributions follow torchvision:
    RandomResizedCrop(scale, ratio) with 10 attempts then a centre-crop fallback; ColorJitter
    factors uniform in [max(0, 1 - s), 1 + s] (hue in [-hue, hue]) and a random op order;
    blur sigma uniform in ``blur_sigma``; each op switched on with its probability.
    """
    if generator is not None and generator.device.type != "cpu":
        raise ValueError("sample_view_params needs a CPU torch.Generator (parameters are drawn on the CPU)")
    n, g = batch_size, generator
    boxes = _sample_boxes(n, height, width, scale, ratio, g)
    flip = torch.rand(n, generator=g) < hflip_prob
    jitter = torch.rand(n, generator=g) < jitter_prob
    b = _uniform(n, max(0.0, 1 - brightness), 1 + brightness, g).float()
    c = _uniform(n, max(0.0, 1 - contrast), 1 + contrast, g).float()
    s = _uniform(n, max(0.0, 1 - saturation), 1 + saturation, g).float()
    h = _uniform(n, -hue, hue, g).float()
    order = torch.rand(n, 4, generator=g).argsort(dim=1)  # uniform random permutations
    gray = torch.rand(n, generator=g) < grayscale_prob
    blur = torch.rand(n, generator=g) < blur_prob
    sigma = _uniform(n, blur_sigma[0], blur_sigma[1], g).float()
    solarize = torch.rand(n, generator=g) < solarize_prob
    return ViewParams(boxes=boxes, flip=flip, jitter=jitter, brightness=b, contrast=c, saturation=s,
                      hue=h, jitter_order=order, grayscale=gray, blur=blur, sigma=sigma, solarize=solarize)


def gaussian_kernel_size(sigma: float) -> int:
    """Side of the gaussian kernel for std ``sigma`` px: 2 * ceil(3 * sigma) + 1, at least 3 (the
    weights beyond 3 sigma sum to < 0.3%; PIL's box-blur approximation has no cut-off either)."""
    if not sigma > 0:
        raise ValueError(f"blur sigma must be positive, got {sigma}")
    return max(3, 2 * math.ceil(3 * sigma) + 1)


def _blur_kernel_for(params: "ViewParams") -> int:
    """One kernel side for the batch: wide enough for the largest sigma among the blurred samples
    (a mask on the device costs one sync here)."""
    sigmas = params.sigma.masked_select(params.blur)
    return gaussian_kernel_size(float(sigmas.max())) if sigmas.numel() else 3


# ---- per-sample image ops on float images in [0, 1] ------------------------------------------

def _pick(t: Tensor, idx: Tensor | None) -> Tensor:
    return t if idx is None else t.index_select(0, idx)


def _masked(x: Tensor, mask: Tensor, fn: Callable[[Tensor, Tensor | None], Tensor]) -> Tensor:
    """Replace the samples of ``x`` selected by ``mask`` (B,) with ``fn(those samples, their index)``.

    A CPU mask (the usual case: parameters are drawn on the CPU) lets us skip the op when nothing is
    selected and run it on the selected samples only, with no device-to-host sync. A mask on the
    device falls back to computing every sample and ``torch.where``.
    """
    if mask.device.type == "cpu":
        count = int(mask.sum())
        if count == 0:
            return x
        if count == mask.numel():
            return fn(x, None)
        idx = mask.nonzero().squeeze(1).to(x.device, non_blocking=True)
        return x.index_copy_(0, idx, fn(x.index_select(0, idx), idx))
    return _masked_where(x, mask, fn)


def _masked_where(x: Tensor, mask: Tensor, fn: Callable[[Tensor, Tensor | None], Tensor]) -> Tensor:
    """``_masked`` for a mask on the device: op on every sample, keep it where selected."""
    return torch.where(mask.to(x.device).view(-1, 1, 1, 1), fn(x, None), x)


def _luma(x: Tensor) -> Tensor:
    """(B, 1, H, W) grayscale with torchvision's weights."""
    r, g, b = x.unbind(1)
    return (r * _LUMA[0] + g * _LUMA[1] + b * _LUMA[2]).unsqueeze(1)


def _blend(x: Tensor, ref: Tensor, factor: Tensor) -> Tensor:
    """clamp(factor * x + (1 - factor) * ref, 0, 1) with a per-sample factor (torchvision's _blend)."""
    f = factor.view(-1, 1, 1, 1)
    return (x * f + ref * (1 - f)).clamp_(0.0, 1.0)


def _jitter_blend(x: Tensor, op: Tensor, p: ViewParams, idx: Tensor | None) -> Tensor:
    """Brightness (op 0), contrast (1) or saturation (2) per sample: each is a blend with a
    reference image, namely black, the mean luma, or the luma itself."""
    factor = torch.where(op == 0, _pick(p.brightness, idx),
                         torch.where(op == 1, _pick(p.contrast, idx), _pick(p.saturation, idx)))
    gray = _luma(x)
    o = op.view(-1, 1, 1, 1)
    ref = torch.where(o == 2, gray, torch.where(o == 1, gray.mean(dim=(1, 2, 3), keepdim=True), 0.0))
    return _blend(x, ref, factor)


def _adjust_hue(x: Tensor, shift: Tensor) -> Tensor:
    """Rotate hue by ``shift`` (B,) turns: RGB -> HSV, h += shift, HSV -> RGB, like torchvision.

    Uses the closed form of HSV -> RGB, channel_n = V - C * clamp(min(k, 4 - k), 0, 1) with
    k = (n + 6h) mod 6, n = 5, 3, 1 for R, G, B and chroma C = V * S = max - min.
    """
    r, g, b = x.unbind(1)
    maxc = torch.maximum(torch.maximum(r, g), b)
    minc = torch.minimum(torch.minimum(r, g), b)
    chroma = maxc - minc
    safe = torch.where(chroma > 0, chroma, torch.ones_like(chroma))
    h6 = torch.where(maxc == r, (g - b) / safe,
                     torch.where(maxc == g, 2.0 + (b - r) / safe, 4.0 + (r - g) / safe))
    h6 = torch.remainder(h6 + 6.0 * shift.view(-1, 1, 1), 6.0)
    n = (5.0 - 2.0 * torch.arange(3, device=x.device, dtype=x.dtype)).view(1, 3, 1, 1)  # 5, 3, 1
    k = torch.remainder(n + h6.unsqueeze(1), 6.0)
    w = torch.minimum(k, 4.0 - k).clamp_(0.0, 1.0)
    return (maxc.unsqueeze(1) - chroma.unsqueeze(1) * w).clamp_(0.0, 1.0)


def _gaussian_blur(x: Tensor, sigma: Tensor, ksize: int) -> Tensor:
    """Separable gaussian blur with a per-sample sigma (B,), edge pixels repeated (PIL's rule), one
    grouped conv per axis."""
    n, c, hgt, wid = x.shape
    offs = torch.arange(ksize, device=x.device, dtype=x.dtype) - (ksize - 1) / 2
    kern = torch.exp(-(offs ** 2) / (2 * sigma.view(-1, 1) ** 2))
    kern = (kern / kern.sum(dim=1, keepdim=True)).repeat_interleave(c, dim=0)  # (B*C, k)
    pad = ksize // 2
    y = F.pad(x, (pad, pad, pad, pad), mode="replicate").reshape(1, n * c, hgt + 2 * pad, wid + 2 * pad)
    y = F.conv2d(y, kern.view(n * c, 1, 1, ksize), groups=n * c)
    y = F.conv2d(y, kern.view(n * c, 1, ksize, 1), groups=n * c)
    return y.view(n, c, hgt, wid)


def _crop_grid(boxes: Tensor, flip: Tensor, height: int, width: int, out_size: int) -> Tensor:
    """Per-sample ``grid_sample`` grids (B, S, S, 2) reproducing interpolate() on each crop."""
    top, left, h, w = boxes.unbind(1)
    pos = torch.arange(out_size, device=boxes.device, dtype=boxes.dtype) + 0.5
    # Source pixel centres of align_corners=False resizing, clamped to the crop like interpolate().
    py = top[:, None] + pos * (h[:, None] / out_size) - 0.5
    px = left[:, None] + pos * (w[:, None] / out_size) - 0.5
    py = torch.minimum(torch.maximum(py, top[:, None]), (top + h - 1)[:, None])
    px = torch.minimum(torch.maximum(px, left[:, None]), (left + w - 1)[:, None])
    px = torch.where(flip[:, None], px.flip(1), px)  # horizontal flip of the output
    gy = (2 * py + 1) / height - 1
    gx = (2 * px + 1) / width - 1
    n = boxes.shape[0]
    return torch.stack((gx[:, None, :].expand(n, out_size, out_size),
                        gy[:, :, None].expand(n, out_size, out_size)), dim=-1)


def _to_float01(images: Tensor) -> Tensor:
    """uint8 -> float32 / 255; float input is taken as already in [0, 1]."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be (B, 3, H, W), got shape {tuple(images.shape)}")
    if images.dtype == torch.uint8:
        return images.float().div_(255.0)
    return images.float()


@torch.no_grad()
def apply_view(images: Tensor, params: ViewParams, out_size: int, *,
               solarize_threshold: float = 0.5) -> Tensor:
    """Render one view of every image with its own parameters.

    ``images`` is uint8 (B, 3, H, W) (or float in [0, 1]) on any device; ``params`` may live on the
    CPU (usual; lets unused ops be skipped without a sync) or on that device. Returns float32
    (B, 3, out_size, out_size) in [0, 1] on the images' device, not normalised.
    """
    x = _to_float01(images)
    dev = x.device
    p = params.to(dev)
    _, _, height, width = x.shape

    # 1. Crop + resize + flip: one bilinear grid_sample for the whole batch.
    grid = _crop_grid(p.boxes, p.flip, height, width, out_size)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)

    # 2. Colour jitter in four slots: at each slot a jittered sample applies the op its own
    #    permutation names there (masks come from the CPU copy of the parameters when we have one).
    for slot in range(4):
        op, op_dev = params.jitter_order[:, slot], p.jitter_order[:, slot]
        x = _masked(x, params.jitter & (op != 3),
                    lambda xs, idx, o=op_dev: _jitter_blend(xs, _pick(o, idx), p, idx))
        x = _masked(x, params.jitter & (op == 3) & (params.hue != 0),
                    lambda xs, idx: _adjust_hue(xs, _pick(p.hue, idx)))

    x = _masked(x, params.grayscale, lambda xs, idx: _luma(xs).expand_as(xs).contiguous())  # 3. Grayscale

    # 4. Gaussian blur with a per-sample sigma.
    ksize = _blur_kernel_for(params)
    x = _masked(x, params.blur, lambda xs, idx: _gaussian_blur(xs, _pick(p.sigma, idx), ksize))

    t = float(solarize_threshold)  # 5. Solarisation.
    x = _masked(x, params.solarize, lambda xs, idx: torch.where(xs >= t, 1.0 - xs, xs))
    return x


class ViewGenerator:
    """Multi-crop view pipeline from an ``AugmentConfig``: global views first, then local views,
    each following its own pipeline (backend.config_augment: view1, view2, local, else shared)."""

    def __init__(self, aug, image_size: int):
        """``aug``: backend.config.AugmentConfig; ``image_size``: side of the global views."""
        self.aug = aug
        self.image_size = int(image_size)
        self.view_sizes = ([self.image_size] * aug.num_global_crops
                           + [int(aug.local_crop_size)] * aug.num_local_crops)
        self._mean = torch.tensor(aug.mean, dtype=torch.float32).view(1, 3, 1, 1)
        self._std = torch.tensor(aug.std, dtype=torch.float32).view(1, 3, 1, 1)
        self._stats: dict = {}
        self._pipelines: dict[int, dict] = {}

    @property
    def num_views(self) -> int:
        """Views per image (global + local)."""
        return len(self.view_sizes)

    def _mean_std(self, device) -> tuple[Tensor, Tensor]:
        key = str(device)
        if key not in self._stats:
            self._stats[key] = (self._mean.to(device), self._std.to(device))
        return self._stats[key]

    def pipeline(self, index: int) -> dict:
        """View ``index``'s resolved parameters (0-based, globals first): the shared values with
        its own table (view1, view2 or local) applied."""
        if index not in self._pipelines:
            self._pipelines[index] = resolved_view(self.aug, view_table_for(self.aug, index))
        return self._pipelines[index]

    def _params(self, batch_size: int, height: int, width: int, index: int, generator) -> ViewParams:
        a = self.pipeline(index)
        return sample_view_params(
            batch_size, height, width, scale=a["crop_scale"], ratio=a["crop_ratio"],
            hflip_prob=a["hflip_prob"], jitter_prob=a["jitter_prob"], brightness=a["brightness"],
            contrast=a["contrast"], saturation=a["saturation"], hue=a["hue"],
            grayscale_prob=a["grayscale_prob"], blur_prob=a["blur_prob"], blur_sigma=a["blur_sigma"],
            solarize_prob=a["solarize_prob"], generator=generator)

    def sample(self, images_uint8: Tensor, generator: torch.Generator | None = None
               ) -> tuple[list[Tensor], list[ViewParams]]:
        """All views in [0, 1] (not normalised) and their parameters, for training or previews
        (each view with its own ``pipeline(i)``, batched per view)."""
        x = _to_float01(images_uint8)  # converted once, shared by every view
        n, _, height, width = x.shape
        views, params = [], []
        for i, size in enumerate(self.view_sizes):
            vp = self._params(n, height, width, i, generator)
            views.append(apply_view(x, vp, size, solarize_threshold=self.pipeline(i)["solarize_threshold"]))
            params.append(vp)
        return views, params

    def __call__(self, images_uint8: Tensor, generator: torch.Generator | None = None) -> list[Tensor]:
        """Normalised float32 views: ``num_global_crops`` at image_size, then the local views."""
        views, _ = self.sample(images_uint8, generator)
        return [self._normalize_(v) for v in views]

    def _normalize_(self, x01: Tensor) -> Tensor:
        mean, std = self._mean_std(x01.device)
        return x01.sub_(mean).div_(std)

    def normalize(self, x01: Tensor) -> Tensor:
        """(x - mean) / std per channel, for images in [0, 1] (returns a new tensor)."""
        mean, std = self._mean_std(x01.device)
        return (x01 - mean) / std

    def denormalize(self, x: Tensor) -> Tensor:
        """Inverse of ``normalize``, clamped to [0, 1] for display."""
        mean, std = self._mean_std(x.device)
        return (x * std + mean).clamp_(0.0, 1.0)

    @torch.no_grad()
    def eval_views(self, images_uint8: Tensor) -> Tensor:
        """Deterministic views for kNN/linear probe: resize to image_size if needed, normalise."""
        x = _to_float01(images_uint8)
        if x.shape[-2:] != (self.image_size, self.image_size):
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear",
                              align_corners=False, antialias=True).clamp_(0.0, 1.0)
        elif x is images_uint8:
            x = x.clone()  # float input: never normalise the caller's tensor in place
        return self._normalize_(x)
