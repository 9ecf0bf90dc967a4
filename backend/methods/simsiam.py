"""SimSiam (Chen & He 2021, "Exploring simple Siamese representation learning").

One network: backbone, projector ending in BN (no affine parameters, as in the reference code)
and a bottleneck predictor (``model.predictor_hidden_dim``, 512 in the paper). Each view's
prediction regresses the other view's projection through a stop-gradient
(``losses.negative_cosine`` detaches its target); no momentum encoder, no negatives. The paper
uses a 3-layer projector on ImageNet and 2 layers on CIFAR (``model.projector_layers``).
"""

from __future__ import annotations

from .. import losses
from . import register
from .base import Method, StepOutput
from .spec import DISTILLATION, MethodSpec, Param


SPEC = MethodSpec(
    name="simsiam", label="SimSiam", family=DISTILLATION,
    paper="Chen and He 2021, Exploring Simple Siamese Representation Learning",
    help="A predictor regresses the other view's projection through a stop-gradient.",
    reads=("model.predictor_hidden_dim",),
    params={
        "fix_pred_lr": Param(False, "SimSiam: the predictor keeps the base learning rate (no warm-up or cosine "
                             "decay), the official --fix-pred-lr."),
        "projector_last_bn_affine": Param(False, "SimSiam: the projector's output BatchNorm has a learnable "
                                          "scale and shift (lightly's head: yes; official code: no)."),
    },
)


@register(SPEC)
class SimSiam(Method):
    def __init__(self, cfg):
        super().__init__(cfg)
        self.projector = self.projector_head(last_bn=True,
                                             last_bn_affine=cfg.method.projector_last_bn_affine)
        self.predictor = self.predictor_head()

    def fixed_lr_parameters(self):
        """The predictor's parameters with ``fix_pred_lr`` (official SimSiam), else none."""
        return list(self.predictor.parameters()) if self.cfg.method.fix_pred_lr else []

    def training_step(self, views, labels, progress):
        z1, z2 = (self.projector(self.backbone(v)) for v in views[:2])
        p1, p2 = self.predictor(z1), self.predictor(z2)
        # Stop-gradient: z is a constant inside negative_cosine (SimSiam eq. 3-4).
        loss = 0.5 * (losses.negative_cosine(p1, z2) + losses.negative_cosine(p2, z1))
        return StepOutput(loss=loss, z1=z1, z2=z2)
