"""DINO (Caron et al. 2021, "Emerging properties in self-supervised vision transformers").

Self-distillation without labels: a student (backbone + DINOHead) matches the centred, sharpened
output distribution of a teacher that is an EMA of the student (momentum rising along a cosine
from ``method.momentum`` to ``momentum_final``). The teacher sees the two global crops, the
student sees every crop (multi-crop); pairs of the same crop are skipped (``losses.dino``).

* Centring (eq. 4): ``center`` is a buffer (so checkpoints hold it), updated after each forward
  with the mean teacher logit of the global crops (all ranks' batches under torchrun).
* Teacher temperature: linear warm-up from ``warmup_teacher_temp`` to ``teacher_temp`` over
  ``teacher_temp_warmup_epochs``, evaluated per step (DINO steps it per epoch), then constant.
* ``freeze_last_layer_epochs``: the head's last layer gets no update at the start (DINO's
  ``cancel_gradients_last_layer``), which keeps the early, noisy prototypes from collapsing.

Works with CNN and ViT backbones; with a ViT ``self.backbone`` is the ``ViTBackbone`` whose
``last_attention`` gives the attention maps DINO is known for.
"""

from __future__ import annotations

import torch

from .. import losses
from ..models.heads import DINOHead
from . import register
from .base import Method, StepOutput
from .components import global_center_update, make_target, multicrop_forward
from .spec import DISTILLATION, MethodSpec, Param, momentum, momentum_final

NUM_TEACHER_VIEWS = 2  # the global crops

SPEC = MethodSpec(
    name="dino", label="DINO", family=DISTILLATION,
    paper="Caron et al. 2021, Emerging Properties in Self-Supervised Vision Transformers",
    help="Self-distillation: a student matches an EMA teacher's centred, sharpened outputs.",
    params={
        "momentum": momentum(),
        "momentum_final": momentum_final(),
        "out_dim": Param(4096, "DINO: head output dimension (number of prototypes).", ge=2),
        "student_temp": Param(0.1, "DINO: student softmax temperature.", gt=0.0),
        "teacher_temp": Param(0.04, "DINO: final teacher temperature.", gt=0.0),
        "warmup_teacher_temp": Param(0.04, "DINO: initial teacher temperature.", gt=0.0),
        "teacher_temp_warmup_epochs": Param(30, "DINO: epochs of teacher temperature warm-up.", ge=0),
        "center_momentum": Param(0.9, "DINO: momentum of the centre update.", ge=0.0, lt=1.0),
        "norm_last_layer": Param(True, "DINO: weight-normalise the last layer with a fixed norm."),
        "head_batch_norm": Param(False, "DINO: BatchNorm in the head's hidden layers (lightly's CIFAR head; "
                                 "DINO's own head has none)."),
        "freeze_last_layer_epochs": Param(1.0, "DINO: epochs at the start during which the head's last "
                                          "layer gets no updates (stabilises early training).", ge=0.0),
    },
)


@register(SPEC)
class DINO(Method):
    cosine_momentum_schedule = True

    def __init__(self, cfg):
        super().__init__(cfg)
        m, model = cfg.method, cfg.model
        # Student head; named ``projector`` so evaluation/metrics find it like every method's head.
        self.projector = DINOHead(self.feature_dim, m.out_dim, hidden_dim=model.projector_hidden_dim,
                                  bottleneck_dim=model.projector_out_dim,
                                  num_layers=model.projector_layers, norm_last_layer=m.norm_last_layer,
                                  batch_norm=m.head_batch_norm)
        self.teacher_backbone = make_target(self.backbone)
        self.teacher_head = make_target(self.projector)
        self.register_buffer("center", torch.zeros(1, m.out_dim))

    def momentum_pairs(self):
        return [(self.backbone, self.teacher_backbone), (self.projector, self.teacher_head)]

    def teacher_temperature(self, progress: float) -> float:
        """Teacher softmax temperature at the current (true) epoch (``epoch_now``)."""
        m = self.cfg.method
        epoch = self.epoch_now(progress)
        if m.teacher_temp_warmup_epochs <= 0 or epoch >= m.teacher_temp_warmup_epochs:
            return m.teacher_temp
        return m.warmup_teacher_temp + (m.teacher_temp - m.warmup_teacher_temp) * epoch / m.teacher_temp_warmup_epochs

    def training_step(self, views, labels, progress):
        m = self.cfg.method
        with torch.no_grad():
            teacher_out = multicrop_forward(lambda x: self.teacher_head(self.teacher_backbone(x)),
                                            views[:NUM_TEACHER_VIEWS])
        student_out = multicrop_forward(lambda x: self.projector(self.backbone(x)), views)
        temp = self.teacher_temperature(progress)
        loss = losses.dino(student_out, teacher_out, self.center, student_temp=m.student_temp, teacher_temp=temp)
        with torch.no_grad():
            # Entropy of the teacher targets with the centre the loss used (log K = uniform, 0 = one-hot).
            probs = torch.softmax((torch.cat(teacher_out).float() - self.center) / temp, dim=-1)
            entropy = -(probs * torch.log(probs.clamp_min(1e-12))).sum(dim=-1).mean()
            self.center.copy_(global_center_update(self.center, teacher_out, m.center_momentum))
        extras = {"teacher_entropy": entropy, "center_norm": self.center.norm(), "teacher_temp": temp}
        return StepOutput(loss=loss, z1=student_out[0], z2=student_out[1], extras=extras)

    def before_optimizer_step(self, progress: float) -> None:
        # No update of the last layer at first: a None gradient also skips weight decay and momentum.
        if self.epoch_now(progress) < self.cfg.method.freeze_last_layer_epochs:
            for p in self.projector.last_layer.parameters():
                p.grad = None
