"""NNCLR (Dwibedi et al. 2021, "With a little help from my friends: nearest-neighbor contrastive
learning of visual representations").

SimCLR-like, but the positive of a view is the nearest neighbour of its projection in a support
set (a FIFO of past L2-normalised projections, ``method.queue_size``), not the projection itself.
Eq. 1 with the predictor: ``-log exp(NN(z1_i) . p2_i / t) / sum_k exp(NN(z1_i) . p2_k / t)``,
symmetrised over the views (``losses.batch_info_nce``); neighbours carry no gradient. The support
set is searched before this batch's view-1 projections are added; until it holds anything the
projection is its own neighbour. Projector with BN after its last layer, as in the paper.

Extras: ``queue_fill`` and, when the data set is labelled, ``nn_accuracy``: how often the
neighbour has the image's class (labels serve only this diagnostic, never the loss).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .. import losses
from ..distributed import gather_no_grad, gather_with_grad
from . import register
from .base import Method, StepOutput
from .components import FeatureQueue
from .spec import CONTRASTIVE, MethodSpec, queue_size, temperature


SPEC = MethodSpec(
    name="nnclr", label="NNCLR", family=CONTRASTIVE,
    paper="Dwibedi et al. 2021, With a Little Help from My Friends: Nearest-Neighbor Contrastive Learning of Visual Representations",
    help="The positive of a view is its projection's nearest neighbour in a support set.",
    params={"temperature": temperature(),
            "queue_size": queue_size(help="Size of the support set of past projections (nearest neighbours).")},
    reads=("model.predictor_hidden_dim",),
)


@register(SPEC)
class NNCLR(Method):
    def __init__(self, cfg):
        super().__init__(cfg)
        self.projector = self.projector_head(last_bn=True)
        self.predictor = self.predictor_head()
        self.support = FeatureQueue(cfg.method.queue_size, cfg.model.projector_out_dim)

    @torch.no_grad()
    def nearest_neighbours(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(neighbour rows, their support-set indices) for the rows of ``z``; only filled entries
        of the support set count, and an empty support set returns ``z`` itself (index -1)."""
        z = F.normalize(z.detach().float(), dim=1)
        bank = self.support.features
        filled = torch.arange(bank.shape[0], device=bank.device) < self.support.filled
        sims = (z @ bank.T).masked_fill(~filled, float("-inf"))
        idx = sims.argmax(dim=1)
        empty = self.support.filled == 0  # a tensor: no host sync on GPUs
        neighbours = torch.where(empty, z, bank[idx])
        return neighbours, torch.where(empty, torch.full_like(idx, -1), idx)

    def training_step(self, views, labels, progress):
        z1, z2 = (self.projector(self.backbone(v)) for v in views[:2])
        p1, p2 = self.predictor(z1), self.predictor(z2)
        (nn1, idx1), (nn2, _) = self.nearest_neighbours(z1), self.nearest_neighbours(z2)
        t = self.cfg.method.temperature
        # Under torchrun the other ranks' predictions are negatives too.
        loss = 0.5 * (losses.batch_info_nce(gather_no_grad(nn1), gather_with_grad(p2), t)
                      + losses.batch_info_nce(gather_no_grad(nn2), gather_with_grad(p1), t))
        extras = {"queue_fill": self.support.fill_fraction()}
        if labels is not None:
            hits = (self.support.labels[idx1.clamp(min=0)] == labels) & (idx1 >= 0)
            extras["nn_accuracy"] = hits.float().mean()
        new_labels = None if labels is None else gather_no_grad(labels)
        self.support.push(gather_no_grad(F.normalize(z1.detach().float(), dim=1)), new_labels)
        return StepOutput(loss=loss, z1=z1, z2=z2, extras=extras)
