"""CPC's InfoNCE over a patch grid (van den Oord et al. 2018; CPC v2, Hénaff et al. 2019).

Every patch of the :func:`.patches.cpc_grid` is encoded to a latent ``z`` (N, D, G, G); a masked
(causal, top-to-bottom) context network summarises the rows up to each position into ``c``; for
each offset k a linear head ``W_k`` predicts ``z`` k rows below: ``pred_k = W_k c``. The score is
the plain dot product ``pred_k[i, j] . z[i + k, j]`` (CPC's log-bilinear model, no normalisation,
no temperature). The positive of the prediction at (n, i, j) is ``z[n, :, i + k, j]``; as in CPC v2
the negatives are all other patches in the batch (every image, every position). Predicting from
other directions (CPC v2 also predicts upwards and sideways) is the caller's: flip or transpose
both grids and call again.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from backend.losses import _fp32

__all__ = ["cpc_infonce"]


@_fp32
def cpc_infonce(context_predictions: Sequence[torch.Tensor], targets: torch.Tensor) -> torch.Tensor:
    """Mean over offsets k = 1..K of the InfoNCE cross entropy of the predictions k rows ahead.

    ``context_predictions``: K tensors (N, D, G, G), entry k - 1 made from the context at each
    position for the patch k rows below (its last k rows have no target and are ignored);
    ``targets``: (N, D, G, G) patch latents. For offset k the (N (G - k) G) valid predictions are
    scored against all N G G latents; each row's target is its own patch. Needs K < G. Memory is
    about N G^2 x N G^2 logits per offset (256 images of a 7 x 7 grid: 12544^2 floats, 0.6 GB).
    """
    preds = list(context_predictions)
    if not preds:
        raise ValueError("cpc_infonce needs at least one offset's predictions")
    if targets.dim() != 4 or targets.shape[2] != targets.shape[3]:
        raise ValueError(f"targets must be (N, D, G, G), got {tuple(targets.shape)}")
    n, d, g, _ = targets.shape
    if len(preds) >= g:
        raise ValueError(f"{len(preds)} offsets need a grid taller than {g} rows")
    keys = targets.permute(0, 2, 3, 1).reshape(n * g * g, d)          # row (n, i, j)
    index = torch.arange(n * g * g, device=targets.device).view(n, g, g)
    total = 0.0
    for k, pred in enumerate(preds, start=1):
        if pred.shape != targets.shape:
            raise ValueError(f"prediction for offset {k} has shape {tuple(pred.shape)}, "
                             f"expected {tuple(targets.shape)}")
        queries = pred[:, :, : g - k, :].permute(0, 2, 3, 1).reshape(-1, d)
        logits = queries @ keys.to(queries.dtype).T
        positive = index[:, k:, :].reshape(-1)
        total = total + F.cross_entropy(logits, positive)
    return total / len(preds)
