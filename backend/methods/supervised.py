"""Supervised baseline: the same backbone and augmented views as the self-supervised methods,
trained with cross entropy by a linear classifier on the backbone features (the usual reference
point of SSL papers, e.g. SimCLR's Table 8).

``Supervised`` is also the base of the pretext-classification methods (rotation.py): a subclass
says how many outputs it needs and what it classifies (``pretext``). The classifier is not an
embedding, so ``projector`` is the identity: ``embed``/``project`` return the backbone features
twice, and the engine's alignment/uniformity/rank metrics describe backbone features for both
of their rows ("" and "backbone_").
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..data.sources import known_num_classes
from ..errors import DataError
from . import register
from .base import Method, StepOutput
from .spec import SUPERVISED, MethodSpec


SPEC = MethodSpec(
    name="supervised", label="Supervised", family=SUPERVISED, uses_labels=True,
    paper="He et al. 2016, Deep Residual Learning for Image Recognition (the supervised baseline)",
    help="Cross entropy of a linear classifier on the backbone features (the reference point).",
)


@register(SPEC)
class Supervised(Method):
    def __init__(self, cfg):
        super().__init__(cfg)
        self.projector = nn.Identity()
        outputs = self.num_outputs()
        self._size_from_checkpoint = outputs == 0
        self.classifier = nn.Linear(self.feature_dim, max(outputs, 1))
        self._labels_checked = False

    def num_outputs(self) -> int:
        """One logit per class of the training source (0 when it cannot be told here, e.g. an
        image folder that is gone: a checkpoint then brings its classifier's size)."""
        return known_num_classes(self.cfg.data) or 0

    def pretext(self, views, labels) -> tuple[torch.Tensor, torch.Tensor]:
        """(images, targets): every global view with its image's class."""
        global_views = views[:self.cfg.augment.num_global_crops]
        return torch.cat(global_views), labels.repeat(len(global_views))

    def classification_loss(self, logits, targets):
        """Cross entropy of the classifier (fine-tuning adds label smoothing)."""
        return F.cross_entropy(logits, targets)

    def training_step(self, views, labels, progress):
        images, targets = self.pretext(views, labels)
        if not self._labels_checked:  # once: a bad label would be a device assert on CUDA
            if int(targets.max()) >= self.classifier.out_features:
                raise DataError(f"{self.name}: label {int(targets.max())} but the classifier has "
                                f"{self.classifier.out_features} outputs (data.source changed?)")
            self._labels_checked = True
        features = self.backbone(images)
        logits = self.classifier(features)
        loss = self.classification_loss(logits, targets)
        accuracy = (logits.detach().argmax(dim=1) == targets).float().mean()
        # z1: backbone features of the first images (no projector; there is no second view to pair).
        return StepOutput(loss=loss, z1=features[:views[0].shape[0]], extras={"train_accuracy": accuracy})

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        # A classifier built without a known class count takes the checkpoint's size.
        weight = state_dict.get("classifier.weight")
        if weight is not None and self._size_from_checkpoint:
            device = self.classifier.weight.device
            self.classifier = nn.Linear(weight.shape[1], weight.shape[0]).to(device)
        return super().load_state_dict(state_dict, strict=strict, assign=assign)
