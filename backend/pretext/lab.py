"""sRGB <-> CIE Lab (D65, 2 degree observer) on the device, as scikit-image's ``rgb2lab`` /
``lab2rgb`` compute it, plus the L / ab split used by colorization (Zhang et al. 2016).

Inputs are (N, 3, H, W) float RGB in [0, 1] (the trainer's views are mean/std normalised: undo
that first). L is in [0, 100], a and b roughly in [-110, 110].
"""

from __future__ import annotations

import torch

__all__ = ["rgb_to_lab", "lab_to_rgb", "split_lab", "merge_lab", "L_SCALE", "AB_SCALE"]

# sRGB (linear) -> XYZ, the matrix scikit-image uses, and the D65 white point.
_XYZ_FROM_RGB = ((0.412453, 0.357580, 0.180423),
                 (0.212671, 0.715160, 0.072169),
                 (0.019334, 0.119193, 0.950227))
_WHITE = (0.95047, 1.0, 1.08883)
_EPS = 0.008856          # (6/29)^3, as rounded by scikit-image
_KAPPA = 7.787           # (29/6)^2 / 3, likewise
_F_EPS = 0.2068966       # f(_EPS) = 6/29
L_SCALE = 50.0           # split_lab: L -> L / 50 - 1 in [-1, 1]
AB_SCALE = 110.0         # split_lab: ab -> ab / 110, roughly [-1, 1]


def _check(x: torch.Tensor, name: str) -> None:
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"{name} needs an (N, 3, H, W) batch, got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"{name} needs a float tensor, got {x.dtype}")


def _mix(matrix, x: torch.Tensor) -> torch.Tensor:
    m = torch.tensor(matrix, dtype=x.dtype, device=x.device)
    return torch.einsum("ij,njhw->nihw", m, x)


def _white(x: torch.Tensor) -> torch.Tensor:
    return torch.tensor(_WHITE, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)


def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) sRGB in [0, 1] -> (N, 3, H, W) Lab (L in [0, 100]); float32 or float64.

    sRGB gamma removed (``c / 12.92`` below 0.04045, else ``((c + 0.055) / 1.055)^2.4``), linear
    RGB -> XYZ, divided by the D65 white, ``f(t) = t^(1/3)`` above 0.008856 else ``7.787 t +
    16/116``; ``L = 116 f(y) - 16``, ``a = 500 (f(x) - f(y))``, ``b = 200 (f(y) - f(z))``.
    """
    _check(rgb, "rgb_to_lab")
    x = rgb.float() if rgb.dtype in (torch.float16, torch.bfloat16) else rgb
    x = x.clamp(0.0, 1.0)
    linear = torch.where(x > 0.04045, ((x + 0.055) / 1.055).pow(2.4), x / 12.92)
    xyz = _mix(_XYZ_FROM_RGB, linear) / _white(x)
    f = torch.where(xyz > _EPS, xyz.clamp(min=_EPS).pow(1.0 / 3.0), _KAPPA * xyz + 16.0 / 116.0)
    fx, fy, fz = f[:, 0], f[:, 1], f[:, 2]
    return torch.stack([116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)], dim=1)


def lab_to_rgb(lab: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) Lab -> sRGB in [0, 1], the inverse of :func:`rgb_to_lab`.

    As scikit-image: z is clipped at 0 before the cube, out-of-gamut RGB is clipped to [0, 1].
    """
    _check(lab, "lab_to_rgb")
    x = lab.float() if lab.dtype in (torch.float16, torch.bfloat16) else lab
    fy = (x[:, 0] + 16.0) / 116.0
    f = torch.stack([x[:, 1] / 500.0 + fy, fy, (fy - x[:, 2] / 200.0).clamp(min=0.0)], dim=1)
    xyz = torch.where(f > _F_EPS, f.pow(3), (f - 16.0 / 116.0) / _KAPPA) * _white(x)
    rgb_from_xyz = torch.linalg.inv(torch.tensor(_XYZ_FROM_RGB, dtype=torch.float64))
    linear = _mix(rgb_from_xyz.tolist(), xyz)
    srgb = torch.where(linear > 0.0031308,
                       1.055 * linear.clamp(min=0.0031308).pow(1.0 / 2.4) - 0.055, 12.92 * linear)
    return srgb.clamp(0.0, 1.0)


def split_lab(lab: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Lab (N, 3, H, W) -> (L normalised to [-1, 1] (N, 1, H, W), raw ab (N, 2, H, W)).

    The network input is ``L / 50 - 1``; ab stays in Lab units because the colorization bins
    (:mod:`.colorization`) are defined there. Divide ab by :data:`AB_SCALE` for a regression target.
    """
    _check(lab, "split_lab")
    return lab[:, :1] / L_SCALE - 1.0, lab[:, 1:]


def merge_lab(l_norm: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`split_lab`: (N, 1, H, W) normalised L and (N, 2, H, W) ab -> Lab."""
    if l_norm.dim() != 4 or l_norm.shape[1] != 1 or ab.dim() != 4 or ab.shape[1] != 2:
        raise ValueError(f"merge_lab needs (N, 1, H, W) and (N, 2, H, W), got "
                         f"{tuple(l_norm.shape)} and {tuple(ab.shape)}")
    return torch.cat([(l_norm + 1.0) * L_SCALE, ab.to(l_norm.dtype)], dim=1)
