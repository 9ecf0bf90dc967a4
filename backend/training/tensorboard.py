"""The trainer's opt-in TensorBoard logging (``runtime.tensorboard``), rank 0 only, into
``<run>/tensorboard/``: every metric event as a scalar (through :class:`TensorBoardSink`), a grid
of augmentation pairs when training starts and, at each checkpoint, the embedding projector's files
for the backbone features of a fixed set of held-out images. Draws its own random numbers, so a run
trains the same with it on or off."""

from __future__ import annotations

from pathlib import Path

import torch

from ..evaluate import extract_features, subset_indices
from ..tensorboard_log import TensorBoardSink, add_step_projector, require_tensorboard
from .setup import Training

TENSORBOARD_DIR = "tensorboard"
AUGMENTATION_PAIRS = 8      # images shown as (view 1, view 2) rows when training starts
PROJECTOR_IMAGES = 500      # held-out images whose embeddings go to the projector at a checkpoint
THUMB_SIZE = 32             # projector sprite thumbnails (pixels)


class TrainerTensorBoard:
    """The TensorBoard side of one training process; :func:`open_tensorboard` makes it."""

    def __init__(self, t: Training):
        self.log_dir = Path(t.run_dir) / TENSORBOARD_DIR
        self.sink = TensorBoardSink(self.log_dir)   # ConfigError naming the option without tensorboard
        previous = t.events.on_event
        t.events.on_event = self.sink.on_event if previous is None else (
            lambda event: (previous(event), self.sink.on_event(event)))

    def augmentation_pairs(self, t: Training) -> None:
        """Two views each of the first training images (a seeded draw of their own), denormalised."""
        n = min(AUGMENTATION_PAIRS, len(t.train_set))
        images = t.train_set.images[subset_indices(len(t.train_set), n, t.cfg.runtime.seed + 6)].to(t.device)
        gen = torch.Generator().manual_seed(t.cfg.runtime.seed + 7)
        views = list(t.views(images, generator=gen))
        if len(views) < 2:  # single-view augmentation (fine-tuning): two draws of it
            views += list(t.views(images, generator=gen))
        pairs = [t.views.denormalize(v.float()).cpu() for v in views[:2]]
        self.sink.add_augmentation_pairs(torch.stack(pairs, dim=1), step=t.state.step)
        self.sink.flush()

    @torch.no_grad()
    def projector(self, t: Training) -> Path:
        """The projector files of the backbone features of up to PROJECTOR_IMAGES held-out images
        at the current step (labels as metadata when the data has them, thumbnails as the sprite)."""
        test = t.test_set
        idx = subset_indices(len(test), min(PROJECTOR_IMAGES, len(test)), t.cfg.runtime.seed + 8)
        images = test.images[idx]
        feats = extract_features(t.method.backbone, images, t.views.eval_views, device=t.device,
                                 autocast_dtype=t.amp_dtype, channels_last=t.channels_last)
        thumbs = torch.nn.functional.interpolate(images.float() / 255.0, size=(THUMB_SIZE, THUMB_SIZE),
                                                 mode="bilinear", align_corners=False, antialias=True)
        labelled = test.labelled and test.labels is not None
        path = add_step_projector(self.log_dir, t.state.step, feats.numpy(),
                                  test.labels[idx].tolist() if labelled else None, thumbs.numpy(),
                                  class_names=list(test.class_names) if labelled and test.class_names else None)
        self.sink.flush()
        return path

    def close(self) -> None:
        """Flush and close the event file."""
        self.sink.close()


def open_tensorboard(t: Training) -> TrainerTensorBoard | None:
    """The run's TensorBoard logging when ``runtime.tensorboard`` is on, on rank 0 (None otherwise),
    attached to the event stream, with the augmentation pairs written. Raises ConfigError naming
    the option and the pip command when the tensorboard package is missing."""
    if not t.cfg.runtime.tensorboard:
        return None
    if not t.dist.is_main:
        require_tensorboard()  # every rank stops when it is missing, not only the writing one
        return None
    board = TrainerTensorBoard(t)
    board.augmentation_pairs(t)
    return board
