"""Contrastive predictive coding, CPC v2 (Hénaff et al. 2019, "Data-efficient image recognition
with contrastive predictive coding"; van den Oord et al. 2018).

The first view is cut into CPC's 7 x 7 grid of half-overlapping patches
(``backend.pretext.patches.cpc_grid``; at 32 px: 8 px patches at stride 4). Every patch goes
through the shared backbone (one batch of N*49 patches) and a linear map to ``z`` (N, D, 7, 7),
D = ``model.projector_out_dim`` (this linear map is the method's ``projector``). A masked context
network - a PixelCNN-like stack of three causal convolutions whose kernels see only the current
row and the rows above (top padding, no bottom padding), with residual connections - summarises
the rows up to each position into ``c``; for each offset k = 1..K a 1 x 1 conv ``W_k`` predicts
the latent k rows below, and ``backend.pretext.cpc.cpc_infonce`` scores each prediction against
every patch latent of the batch (the other patches are the negatives). Only the top-to-bottom
direction is predicted (CPC v2 also predicts upwards and sideways).

Choices for 32-96 px: K = ``prediction_steps`` (default 3, of at most 6 on a 7-row grid; CPC v2
predicts up to 5 rows of its 7); context width D. CPC v2 replaces batch norm by layer norm in its
encoder, since BN statistics shared by the patches of one image are a possible shortcut; the
backbone here keeps its own normalisation (a tiny_cnn or ResNet has BN) - a known deviation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..pretext.cpc import cpc_infonce
from ..pretext.patches import cpc_grid
from . import register
from ._pretext import PretextMethod, mosaic, tiles_for_display
from .base import StepOutput
from .spec import CONTRASTIVE, MethodSpec, Param

CONTEXT_LAYERS = 3
CONTEXT_ROWS = 2   # rows each causal kernel spans: the current one and the one above

SPEC = MethodSpec(
    paper="Henaff et al. 2019, Data-Efficient Image Recognition with Contrastive Predictive Coding",
    name="cpc", label="CPC v2", family=CONTRASTIVE,
    help="Encode a grid of patches; a masked context network predicts the latents of the rows "
         "below; InfoNCE against every patch of the batch.",
    params={"prediction_steps": Param(3, "Rows ahead the context predicts (offsets 1..K; the "
                                          "grid has 7 rows).", ge=1, le=6)},
)


class CausalRowConv(nn.Conv2d):
    """A 3-wide convolution over the current row and the ``rows - 1`` rows above only: the output
    at row i never depends on a row below i (the input is padded at the top, not the bottom)."""

    def __init__(self, channels: int, rows: int = CONTEXT_ROWS):
        super().__init__(channels, channels, kernel_size=(rows, 3), padding=0)
        self.rows = rows

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, G, G) -> (N, C, G, G)."""
        return super().forward(F.pad(x, (1, 1, self.rows - 1, 0)))


class ContextNetwork(nn.Module):
    """Residual stack of causal row convolutions with ReLUs: c[:, :, i] depends on rows <= i."""

    def __init__(self, channels: int, layers: int = CONTEXT_LAYERS):
        super().__init__()
        self.convs = nn.ModuleList(CausalRowConv(channels) for _ in range(layers))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Context (N, D, G, G) of latents (N, D, G, G)."""
        c = z
        for conv in self.convs:
            c = c + conv(F.relu(c))
        return c


@register(SPEC)
class CPC(PretextMethod):
    def __init__(self, cfg):
        super().__init__(cfg)
        dim = cfg.model.projector_out_dim
        self.projector = nn.Linear(self.feature_dim, dim)
        self.context = ContextNetwork(dim)
        self.predictors = nn.ModuleList(nn.Conv2d(dim, dim, 1) for _ in range(cfg.method.prediction_steps))

    def latents(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(patch latents z (N, D, G, G), patch features (N, G, G, F)) of images (N, C, H, W)."""
        grid = cpc_grid(x)                                     # (N, G, G, C, p, p)
        n, g = grid.shape[:2]
        features = self.backbone(grid.flatten(0, 2)).view(n, g, g, -1)
        return self.projector(features).permute(0, 3, 1, 2), features

    def predictions(self, z: torch.Tensor) -> list[torch.Tensor]:
        """The K predictions (N, D, G, G), entry k - 1 for the latent k rows below."""
        c = self.context(z)
        return [head(c) for head in self.predictors]

    def training_step(self, views, labels, progress):
        z, features = self.latents(views[0])
        if self.cfg.method.prediction_steps >= z.shape[-1]:
            raise ValueError(f"method.prediction_steps {self.cfg.method.prediction_steps} needs a grid "
                             f"taller than {z.shape[-1]} rows")
        loss = cpc_infonce(self.predictions(z), z)
        return StepOutput(loss=loss, z1=features.mean(dim=(1, 2)))


@torch.no_grad()
def preview_inputs(views, cfg, generator=None) -> list:
    """What the network receives: the step's ``cpc_grid`` of the first view, its patches laid out
    with gaps (neighbouring patches overlap by half), in [0, 1]; the context sees the rows above
    a position, the targets are the rows below."""
    grid = cpc_grid(views[0])
    n, g = grid.shape[:2]
    patches = tiles_for_display(grid.flatten(1, 2), cfg)
    return [(f"patch grid, {g} x {g} overlapping patches (context: rows above; targets: rows below)",
             mosaic(patches, g, g, gap=1))]
