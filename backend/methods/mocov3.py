"""MoCo v3 (Chen, Xie & He 2021, "An empirical study of training self-supervised vision
transformers").

BYOL's architecture (online backbone + projector + predictor, EMA target backbone + projector with
the cosine momentum schedule) with a contrastive loss instead of a regression: InfoNCE over the
batch, ``q_i . k_j / T`` with the other images' keys as negatives (no queue), scaled by ``2T`` and
summed over the two directions, as in the paper's Algorithm 1. Heads follow the reference code:
the projector ends in BN without affine parameters; the predictor does too for ViTs but not for
ResNets. Under torchrun the keys of every rank are the negatives (the paper's all-gather).
"""

from __future__ import annotations

from .. import losses
from ..distributed import gather_no_grad, gather_with_grad
from . import register
from .byol import BYOL
from .spec import CONTRASTIVE, MethodSpec, Param, momentum, momentum_final, temperature


SPEC = MethodSpec(
    name="mocov3", label="MoCo v3", family=CONTRASTIVE,
    paper="Chen, Xie and He 2021, An Empirical Study of Training Self-Supervised Vision Transformers",
    help="BYOL's architecture with InfoNCE over the batch's keys.",
    params={"temperature": temperature(), "momentum": momentum(), "momentum_final": momentum_final(),
            "predictor_bias": Param(True, "MoCo v3: the predictor's output Linear has a bias (the official "
                                    "and solo-learn predictors use bias=False throughout).")},
    reads=("model.predictor_hidden_dim",),
)


@register(SPEC)
class MoCoV3(BYOL):
    def build_heads(self):
        projector = self.projector_head(last_bn=True, last_bn_affine=False)
        predictor = self.predictor_head(last_bn=self.family == "vit", last_bn_affine=False,
                                        last_bias=self.cfg.method.predictor_bias and self.family != "vit")
        return projector, predictor

    def loss(self, p1, p2, t1, t2):
        t = self.cfg.method.temperature

        def contrast(q, k):
            return losses.batch_info_nce(gather_with_grad(q), gather_no_grad(k), t) * (2 * t)

        return contrast(p1, t2) + contrast(p2, t1)
