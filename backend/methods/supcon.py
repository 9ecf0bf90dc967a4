"""SupCon (Khosla et al. 2020, "Supervised contrastive learning").

SimCLR's two augmented views, backbone and MLP projector, with the labels deciding the positives:
every view is an anchor whose positives are all other views of images of its class (at least its
own other view), ``losses.supcon`` (the paper's L_out, eq. 2) over the 2N stacked projections.
Under torchrun the projections (with gradient) and labels of every rank are gathered.

Choices for 32-96 px images: temperature 0.1 (the paper's CIFAR runs use 0.1; 0.07 on ImageNet);
the paper's linear classifier on the frozen encoder is the workbench's linear probe.
"""

from __future__ import annotations

import torch

from .. import losses
from ..distributed import gather_no_grad, gather_with_grad
from . import register
from .base import Method, StepOutput
from .spec import SUPERVISED, MethodSpec, temperature


SPEC = MethodSpec(
    paper="Khosla et al. 2020, Supervised Contrastive Learning",
    name="supcon", label="SupCon", family=SUPERVISED, uses_labels=True,
    help="Two views, MLP projector, contrastive loss with every same-class view as a positive.",
    params={"temperature": temperature(0.1)},
)


@register(SPEC)
class SupCon(Method):
    def __init__(self, cfg):
        super().__init__(cfg)
        self.projector = self.projector_head()

    def stacked(self, views, labels) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
        """(per-view projections, all projections stacked view by view (2N, D), their labels)."""
        if labels is None:
            raise ValueError("supcon needs the batch's labels")
        z = [self.projector(self.backbone(v)) for v in views[:2]]
        return z, torch.cat(z), labels.repeat(len(z))

    def training_step(self, views, labels, progress):
        z, stacked, targets = self.stacked(views, labels)
        loss = losses.supcon(gather_with_grad(stacked), gather_no_grad(targets), self.cfg.method.temperature)
        return StepOutput(loss=loss, z1=z[0], z2=z[1])
