"""Fine-tuning as a method: the backbone (initialised from a trained checkpoint through
``model.init_checkpoint``) plus a new linear classifier, trained end to end with cross entropy
and label smoothing on one crop + flip view per image. The engine trains it like every other run
(stop, pause, checkpoints, events, NaN policy); at the end the run scores the test split and
records the result (``backend.finetune.record_finetune_result``).

Its own hyperparameters are the label smoothing and the label fraction (train on a class-balanced
subset of the labelled images, ``backend.label_subsets``: the 1 % / 10 % semi-supervised protocol,
recorded with the result); the optimiser side (SGD Nesterov, cosine, the
backbone's lr scale) lives in ``optim``."""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

from . import register
from .spec import SUPERVISED, MethodSpec, Param
from .supervised import Supervised

SPEC = MethodSpec(
    name="finetune", label="Fine-tune (backbone + linear classifier)", family=SUPERVISED, uses_labels=True,
    paper="Kornblith et al. 2019, Do Better ImageNet Models Transfer Better? (the fine-tuning protocol)",
    help="A trained backbone (model.init_checkpoint) and a new linear classifier, trained end to end.",
    params={"label_smoothing": Param(0.1, "Label smoothing of the cross entropy.", ge=0.0, lt=1.0),
            "label_fraction": Param(1.0, "Train on a class-balanced subset holding this fraction of the labelled "
                                    "training images (0.01 / 0.1: the semi-supervised protocol; 1 = all).",
                                    gt=0.0, le=1.0),
            "subset_seed": Param(0, "Seed of the label subset (the same seed picks the same images).", ge=0)},
    reads=("model.source_run",),
)


@register(SPEC)
class FineTune(Supervised):

    @staticmethod
    def training_subset(cfg, train_set, events):
        """The training split the engine trains on: with ``method.label_fraction`` < 1 its
        class-balanced subset (``backend.label_subsets.balanced_subset``, ``method.subset_seed``)."""
        fraction = cfg.method.label_fraction
        if fraction >= 1.0 or train_set.labels is None:
            return train_set
        from ..errors import ConfigError
        from ..label_subsets import balanced_subset

        index = torch.from_numpy(balanced_subset(train_set.labels.numpy(), fraction, cfg.method.subset_seed))
        if len(index) < cfg.optim.batch_size:
            raise ConfigError(f"optim.batch_size must be <= the {len(index)} images of the {fraction:g} label "
                              f"subset, got {cfg.optim.batch_size}")
        events.log(f"fine-tuning on {len(index)} of {len(train_set)} labelled training images "
                   f"(class-balanced {fraction:g} subset, seed {cfg.method.subset_seed})",
                   label_fraction=fraction, subset_size=len(index))
        # the subset is held in memory (it is small): it no longer maps the cache file's rows
        return dataclasses.replace(train_set, images=train_set.images[index], labels=train_set.labels[index],
                                   images_path="")

    def classification_loss(self, logits, targets):
        """Cross entropy with the recipe's label smoothing (the rest of the step is Supervised's)."""
        return F.cross_entropy(logits.float(), targets, label_smoothing=self.cfg.method.label_smoothing)

    def final_evaluation(self, training) -> dict:
        """Score the test split and record the result (called by the engine when training ends)."""
        from ..finetune import record_finetune_result
        return record_finetune_result(training)
