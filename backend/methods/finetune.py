"""Fine-tuning as a method: the backbone (initialised from a trained checkpoint through
``model.init_checkpoint``) plus a new linear classifier, trained end to end with cross entropy
and label smoothing on one crop + flip view per image. The engine trains it like every other run
(stop, pause, checkpoints, events, NaN policy); at the end the run scores the test split and
records the result (``backend.finetune.record_finetune_result``).

Its own hyperparameter is the label smoothing; the optimiser side (SGD Nesterov, cosine, the
backbone's lr scale) lives in ``optim``."""

from __future__ import annotations

import torch.nn.functional as F

from . import register
from .spec import SUPERVISED, MethodSpec, Param
from .supervised import Supervised

SPEC = MethodSpec(
    name="finetune", label="Fine-tune (backbone + linear classifier)", family=SUPERVISED, uses_labels=True,
    paper="Kornblith et al. 2019, Do Better ImageNet Models Transfer Better? (the fine-tuning protocol)",
    help="A trained backbone (model.init_checkpoint) and a new linear classifier, trained end to end.",
    params={"label_smoothing": Param(0.1, "Label smoothing of the cross entropy.", ge=0.0, lt=1.0)},
    reads=("model.source_run",),
)


@register(SPEC)
class FineTune(Supervised):

    def classification_loss(self, logits, targets):
        """Cross entropy with the recipe's label smoothing (the rest of the step is Supervised's)."""
        return F.cross_entropy(logits.float(), targets, label_smoothing=self.cfg.method.label_smoothing)

    def final_evaluation(self, training) -> dict:
        """Score the test split and record the result (called by the engine when training ends)."""
        from ..finetune import record_finetune_result
        return record_finetune_result(training)
