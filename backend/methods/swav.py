"""SwAV (Caron et al. 2020, "Unsupervised learning of visual features by contrasting cluster
assignments").

Projector + prototypes (unit rows, renormalised before every step). The two global crops get
Sinkhorn-Knopp codes (equipartitioned soft assignments, no gradient); every crop, local ones
included, predicts the codes of the other global crop from its prototype scores (swapped
prediction, ``losses.swav``).

* The prototypes are frozen for the first ``freeze_prototypes_steps`` optimiser steps (their
  gradient is dropped before the step; ``steps_done`` is a buffer, so a resumed run agrees).
* Optional queue (``queue_start_epoch`` > 0): per global crop a FeatureQueue of the last
  ``queue_size`` normalised projections; from that epoch on, the queue's prototype scores are
  prepended before Sinkhorn so small batches still get a well-spread assignment.
* Under torchrun the scores are all-gathered (with gradient), so Sinkhorn equipartitions the
  global batch and every rank computes the same loss; the queues receive every rank's rows.

Extras: ``assignment_entropy`` is the mean per-sample entropy (nats) of the first global crop's
codes: log K means uninformative uniform codes, 0 means hard assignments (the entropy of the
*mean* code is pinned near log K by Sinkhorn's equipartition, so it would say nothing);
``queue_fill`` when a queue is configured.
"""

from __future__ import annotations

import torch
from torch import nn

from .. import losses
from ..distributed import gather_no_grad, gather_with_grad
from ..models.heads import Prototypes
from . import register
from .base import Method, StepOutput
from .components import FeatureQueue, multicrop_forward
from .spec import CLUSTERING, MethodSpec, Param, queue_size, temperature

NUM_CODE_VIEWS = 2  # the global crops get codes

SPEC = MethodSpec(
    name="swav", label="SwAV", family=CLUSTERING,
    paper="Caron et al. 2020, Unsupervised Learning of Visual Features by Contrasting Cluster Assignments",
    help="Swapped prediction of Sinkhorn cluster assignments over learnt prototypes.",
    params={
        "temperature": temperature(),
        "queue_size": queue_size(help="Rows of the optional feature queue per global crop."),
        "out_dim": Param(4096, "SwAV: number of prototypes.", ge=2),
        "sinkhorn_epsilon": Param(0.05, "SwAV: Sinkhorn entropy regularisation.", gt=0.0),
        "sinkhorn_iterations": Param(3, "SwAV: Sinkhorn-Knopp iterations.", ge=1),
        "freeze_prototypes_steps": Param(313, "SwAV: keep prototypes frozen for this many steps.", ge=0),
        "queue_start_epoch": Param(0, "SwAV: epoch from which the queue is used (0 = never uses one "
                                   "unless queue_size>0 and this is reached).", ge=0),
    },
)


@register(SPEC)
class SwAV(Method):
    def __init__(self, cfg):
        super().__init__(cfg)
        m, dim = cfg.method, cfg.model.projector_out_dim
        self.projector = self.projector_head()
        self.prototypes = Prototypes(dim, m.out_dim)
        self.register_buffer("steps_done", torch.zeros((), dtype=torch.long))
        self.queues = (nn.ModuleList([FeatureQueue(m.queue_size, dim) for _ in range(NUM_CODE_VIEWS)])
                       if m.queue_start_epoch > 0 else None)

    def queue_active(self, progress: float) -> bool:
        """Whether the queue's scores enter Sinkhorn at this point of training."""
        start = self.cfg.method.queue_start_epoch
        return self.queues is not None and self.epoch_now(progress) >= start

    def training_step(self, views, labels, progress):
        m = self.cfg.method
        self.prototypes.normalize_()  # SwAV keeps the prototypes on the unit sphere
        z = [nn.functional.normalize(p, dim=1)
             for p in multicrop_forward(lambda x: self.projector(self.backbone(x)), views)]
        scores = [gather_with_grad(self.prototypes(v)) for v in z]
        queue_scores = None
        if self.queue_active(progress):
            with torch.no_grad():
                queue_scores = [self.prototypes(q.valid()) for q in self.queues]
        loss = losses.swav(scores, queue=queue_scores, temperature=m.temperature,
                           epsilon=m.sinkhorn_epsilon, sinkhorn_iterations=m.sinkhorn_iterations)
        extras = {"assignment_entropy": self._code_entropy(scores[0], queue_scores)}
        if self.queues is not None:
            for queue, rows in zip(self.queues, z[:NUM_CODE_VIEWS]):
                queue.push(gather_no_grad(rows.detach().float()))
            extras["queue_fill"] = self.queues[0].fill_fraction()
        return StepOutput(loss=loss, z1=z[0], z2=z[1], extras=extras)

    @torch.no_grad()
    def _code_entropy(self, scores: torch.Tensor, queue_scores) -> torch.Tensor:
        """Mean per-sample entropy of the first global crop's codes (as losses.swav computes them)."""
        s = scores.detach().float()
        if queue_scores is not None:
            s = torch.cat([queue_scores[0].float(), s])
        codes = losses.sinkhorn(s, epsilon=self.cfg.method.sinkhorn_epsilon,
                                iterations=self.cfg.method.sinkhorn_iterations)[-scores.shape[0]:]
        return -(codes * torch.log(codes.clamp_min(1e-12))).sum(dim=1).mean()

    def before_optimizer_step(self, progress: float) -> None:
        # Frozen prototypes: dropping the gradient also skips weight decay and momentum for them.
        if int(self.steps_done) < self.cfg.method.freeze_prototypes_steps:
            self.prototypes.weight.grad = None

    @torch.no_grad()
    def after_optimizer_step(self, progress: float) -> dict:
        self.steps_done += 1
        return super().after_optimizer_step(progress)
