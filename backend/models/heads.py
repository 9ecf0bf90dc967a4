"""Projection / prediction heads shared by the methods.

- ``mlp_head``: the Linear-BN-ReLU MLP of SimCLR, BYOL, SimSiam, Barlow Twins, VICReg, MoCo v3.
- ``DINOHead``: DINO's 3-layer GELU MLP, L2-normalised bottleneck and weight-normalised output
  layer (Caron et al. 2021, ``vision_transformer.DINOHead``).
- ``Prototypes``: SwAV's prototype matrix with unit-norm rows (Caron et al. 2020).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def mlp_head(in_dim: int, hidden_dim: int, out_dim: int, num_layers: int = 2, *,
             batch_norm: bool = True, last_bn: bool = False,
             last_bn_affine: bool = True, last_bias: bool | None = None) -> nn.Sequential:
    """An MLP of ``num_layers`` Linear layers: in_dim -> hidden_dim ... -> out_dim.

    Each hidden layer is Linear (+ BatchNorm1d when ``batch_norm``) + ReLU; the last layer is a
    Linear, followed by BatchNorm1d(affine=``last_bn_affine``) when ``last_bn`` (SimSiam's
    projector and MoCo v3's heads use BN without affine there). A Linear followed by BN has no
    bias (BN's shift makes it redundant); ``last_bias`` forces the last Linear's bias on or off
    (MoCo v3's predictor has none). ``num_layers=1`` gives a single Linear (+ last BN).
    """
    if num_layers < 1:
        raise ValueError(f"num_layers must be >= 1, got {num_layers}")
    layers: list[nn.Module] = []
    dim = in_dim
    for _ in range(num_layers - 1):
        layers.append(nn.Linear(dim, hidden_dim, bias=not batch_norm))
        if batch_norm:
            layers.append(nn.BatchNorm1d(hidden_dim))
        layers.append(nn.ReLU(inplace=True))
        dim = hidden_dim
    layers.append(nn.Linear(dim, out_dim, bias=(not last_bn) if last_bias is None else last_bias))
    if last_bn:
        layers.append(nn.BatchNorm1d(out_dim, affine=last_bn_affine))
    return nn.Sequential(*layers)


class WeightNormLinear(nn.Module):
    """Bias-free Linear with weight normalisation: W = g * v / ||v|| per output row.

    ``weight_g`` is (out, 1) and ``weight_v`` is (out, in), like torch's ``weight_norm(dim=0)``,
    but as two plain parameters (simple to EMA-copy, checkpoint and compile).
    """

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        v = torch.empty(out_dim, in_dim)
        nn.init.kaiming_uniform_(v, a=math.sqrt(5))  # nn.Linear's default init
        self.weight_v = nn.Parameter(v)
        self.weight_g = nn.Parameter(v.norm(dim=1, keepdim=True).clone())

    @property
    def weight(self) -> Tensor:
        """The effective weight g * v / ||v|| (out, in)."""
        return self.weight_v * (self.weight_g / self.weight_v.norm(dim=1, keepdim=True))

    def forward(self, x: Tensor) -> Tensor:
        """x @ W^T."""
        return F.linear(x, self.weight)


class DINOHead(nn.Module):
    """DINO projection head: MLP (GELU) -> bottleneck -> L2-normalise -> weight-normed Linear.

    ``num_layers`` Linear layers map in_dim -> hidden_dim ... -> bottleneck_dim (one layer maps
    straight to the bottleneck); ``last_layer`` maps bottleneck_dim -> out_dim logits. Its norm g is
    set to 1, and frozen there when ``norm_last_layer`` (DINO's default), so the logits are
    cosine similarities to out_dim unit vectors. ``batch_norm``: BatchNorm1d after each hidden
    Linear (lightly's ``DINOProjectionHead(batch_norm=True)``; DINO's own head has none).
    """

    def __init__(self, in_dim: int, out_dim: int, hidden_dim: int = 2048, bottleneck_dim: int = 256,
                 num_layers: int = 3, norm_last_layer: bool = True, batch_norm: bool = False):
        super().__init__()
        num_layers = max(num_layers, 1)
        if num_layers == 1:
            self.mlp = nn.Linear(in_dim, bottleneck_dim)
        else:
            def hidden(d_in):  # Linear (+ BatchNorm1d, lightly's CIFAR head) + GELU
                return [nn.Linear(d_in, hidden_dim)] + ([nn.BatchNorm1d(hidden_dim)] if batch_norm else []) + [nn.GELU()]
            layers: list[nn.Module] = hidden(in_dim)
            for _ in range(num_layers - 2):
                layers += hidden(hidden_dim)
            layers.append(nn.Linear(hidden_dim, bottleneck_dim))
            self.mlp = nn.Sequential(*layers)
        for m in self.mlp.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        self.last_layer = WeightNormLinear(bottleneck_dim, out_dim)
        with torch.no_grad():
            self.last_layer.weight_g.fill_(1.0)
        self.last_layer.weight_g.requires_grad_(not norm_last_layer)
        self.norm_last_layer = norm_last_layer

    def forward(self, x: Tensor) -> Tensor:
        """Logits (N, out_dim)."""
        x = F.normalize(self.mlp(x), dim=-1)
        return self.last_layer(x)


class Prototypes(nn.Module):
    """SwAV prototypes: K vectors of size ``dim`` (``weight``, (K, dim)) kept on the unit sphere.

    ``forward(x)`` returns the scores normalize(x) @ W^T (N, K); call ``normalize_()`` before each
    training step (SwAV renormalises the prototypes after every update). The weights start
    normalised.
    """

    def __init__(self, dim: int, num_prototypes: int):
        super().__init__()
        w = torch.empty(num_prototypes, dim)
        nn.init.kaiming_uniform_(w, a=math.sqrt(5))  # same init as Linear(dim, K, bias=False)
        self.weight = nn.Parameter(F.normalize(w, dim=1))
        self.num_prototypes = num_prototypes

    @torch.no_grad()
    def normalize_(self) -> None:
        """L2-normalise each prototype (row of ``weight``) in place."""
        self.weight.copy_(F.normalize(self.weight, dim=1))

    def forward(self, x: Tensor) -> Tensor:
        """Scores (N, K) of the L2-normalised ``x`` against the prototypes."""
        return F.linear(F.normalize(x, dim=-1), self.weight)
