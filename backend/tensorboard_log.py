"""Opt-in TensorBoard logging: an event sink the trainer can attach, augmentation-pair grids and
the embedding projector's files for a checkpoint's embeddings.

``tensorboard`` is an optional extra (``pip install 'ssl-workbench[tensorboard]'``); without it
:class:`TensorBoardSink` raises a ConfigError saying so. :func:`write_projector` writes plain files
(projector_config.pbtxt, tensors.tsv, metadata.tsv, sprite.png) and needs only numpy and Pillow.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .errors import ConfigError
from .spectrum_log import is_spectrum_event, scalar_names

MISSING_MESSAGE = ("runtime.tensorboard is on but the tensorboard package is not installed: "
                   "pip install 'ssl-workbench[tensorboard]'")


def _summary_writer_class():
    """torch's SummaryWriter; ConfigError (MISSING_MESSAGE) when tensorboard is not installed."""
    try:
        import tensorboard  # noqa: F401  (torch's SummaryWriter needs it)
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ConfigError(MISSING_MESSAGE) from None
    return SummaryWriter


def require_tensorboard() -> None:
    """Raise ConfigError (MISSING_MESSAGE) unless tensorboard can be imported."""
    _summary_writer_class()


class TensorBoardSink:
    """Writes a run's metric events as TensorBoard scalars under ``log_dir`` (tag = metric name,
    step = the event's step, wall time = the event's time); a spectrum event (eigenvalues, no
    scalar value) gives its alpha-ReQ and RankMe scalars (``alpha_req`` / ``rankme``, with the
    event's prefix, e.g. ``backbone_rankme``), a collapse warning the scalar ``collapse`` (1 at the
    onset, 0 when it clears). Attach ``sink.on_event`` to an ``EventWriter(on_event=...)``;
    checkpoints and terminal status events flush the file."""

    def __init__(self, log_dir):
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.writer = _summary_writer_class()(log_dir=str(self.log_dir))

    def on_event(self, event: dict) -> None:
        """Log one trainer event (metrics as scalars; other kinds only flush at the end of a run)."""
        kind, step = event.get("kind"), event.get("step")
        if kind == "metric" and isinstance(step, int):
            value = event.get("value")
            if isinstance(value, (int, float)):
                self._scalar(str(event["name"]), value, step, event)
            elif is_spectrum_event(event):
                for tag, key in zip(scalar_names(str(event.get("name", "spectrum"))), ("alpha", "rankme")):
                    if isinstance(event.get(key), (int, float)):
                        self._scalar(tag, event[key], step, event)
        elif kind == "log" and event.get("warning") in ("collapse", "collapse_cleared") \
                and isinstance(step, int):
            self._scalar("collapse", 1.0 if event["warning"] == "collapse" else 0.0, step, event)
        elif kind == "error" or (kind == "status" and event.get("state") in ("checkpoint", "finished", "stopped")):
            self.writer.flush()

    def _scalar(self, tag: str, value, step: int, event: dict) -> None:
        self.writer.add_scalar(tag, float(value), step, walltime=event.get("time"))

    def add_augmentation_pairs(self, images, step: int = 0, tag: str = "augmentation_pairs") -> None:
        """An image grid of two views per row: ``images`` (N, 2, C, H, W) tensor/array in [0, 1]
        (or a list of (view1, view2) pairs of (C, H, W))."""
        import torch
        from torchvision.utils import make_grid

        if isinstance(images, (list, tuple)):
            images = torch.stack([torch.stack([torch.as_tensor(a), torch.as_tensor(b)]) for a, b in images])
        images = torch.as_tensor(images).float()
        if images.ndim != 5 or images.shape[1] != 2:
            raise ConfigError(f"augmentation pairs must be shaped (N, 2, C, H, W), got {tuple(images.shape)}")
        grid = make_grid(images.flatten(0, 1).clamp(0, 1), nrow=2, padding=2)
        self.writer.add_image(tag, grid, step)

    def flush(self) -> None:
        """Write pending events to disk."""
        self.writer.flush()

    def close(self) -> None:
        """Flush and close the event file."""
        self.writer.close()


def _sprite(thumbnails) -> tuple[np.ndarray, int, int]:
    """(sprite HxWx3 uint8, thumb height, thumb width) of (N, H, W, 3) / (N, 3, H, W) images."""
    thumbs = np.asarray(thumbnails)
    if thumbs.ndim != 4:
        raise ConfigError(f"thumbnails must be (N, H, W, 3) or (N, 3, H, W), got shape {thumbs.shape}")
    if thumbs.shape[1] in (1, 3) and thumbs.shape[-1] not in (1, 3):
        thumbs = thumbs.transpose(0, 2, 3, 1)
    if thumbs.dtype != np.uint8:
        thumbs = (np.clip(thumbs, 0, 1) * 255).round().astype(np.uint8)
    if thumbs.shape[-1] == 1:
        thumbs = np.repeat(thumbs, 3, axis=-1)
    n, h, w, _ = thumbs.shape
    side = int(math.ceil(math.sqrt(n)))
    sprite = np.zeros((side * h, side * w, 3), np.uint8)
    for i in range(n):
        r, c = divmod(i, side)
        sprite[r * h:(r + 1) * h, c * w:(c + 1) * w] = thumbs[i]
    return sprite, h, w


def _projector_files(embeddings, labels, thumbnails, folder: Path, class_names, tensor_name: str,
                     prefix: str = "") -> list[str]:
    """Write tensors.tsv / metadata.tsv / sprite.png into ``folder``; the config's ``embeddings``
    entry for them, its paths prefixed by ``prefix`` (their folder relative to the config's)."""
    from PIL import Image

    x = np.asarray(embeddings, dtype=np.float32)
    if x.ndim != 2 or len(x) == 0:
        raise ConfigError(f"embeddings must be a non-empty (N, D) array, got shape {x.shape}")
    folder.mkdir(parents=True, exist_ok=True)
    np.savetxt(folder / "tensors.tsv", x, delimiter="\t", fmt="%.6g")
    entry = ["embeddings {", f'  tensor_name: "{tensor_name}"', f'  tensor_path: "{prefix}tensors.tsv"']
    if labels is not None:
        labels = list(labels)
        if len(labels) != len(x):
            raise ConfigError(f"{len(labels)} labels for {len(x)} embeddings")
        names = [class_names[int(v)] if class_names is not None else str(v) for v in labels]
        (folder / "metadata.tsv").write_text("".join(f"{n}\n" for n in names), encoding="utf-8")
        entry.append(f'  metadata_path: "{prefix}metadata.tsv"')
    if thumbnails is not None:
        if len(thumbnails) != len(x):
            raise ConfigError(f"{len(thumbnails)} thumbnails for {len(x)} embeddings")
        sprite, h, w = _sprite(thumbnails)
        Image.fromarray(sprite).save(folder / "sprite.png")
        entry += ["  sprite {", f'    image_path: "{prefix}sprite.png"', f"    single_image_dim: {w}",
                  f"    single_image_dim: {h}", "  }"]
    entry.append("}")
    return entry


def write_projector(embeddings, labels, thumbnails, log_dir, class_names=None,
                    tensor_name: str = "embeddings") -> Path:
    """The embedding projector's files in ``log_dir``: tensors.tsv (one row per embedding),
    metadata.tsv (a label per row; class names when given), sprite.png (from ``thumbnails``, may
    be None) and projector_config.pbtxt tying them together; returns the config's path."""
    log_dir = Path(log_dir)
    entry = _projector_files(embeddings, labels, thumbnails, log_dir, class_names, tensor_name)
    path = log_dir / "projector_config.pbtxt"
    path.write_text("\n".join(entry) + "\n", encoding="utf-8")
    return path


PROJECTOR_ENTRY = "projector_entry.pbtxt"


def add_step_projector(log_dir, step: int, embeddings, labels, thumbnails, class_names=None,
                       tag: str = "backbone") -> Path:
    """One more checkpoint's embeddings in the projector of the TensorBoard folder ``log_dir`` (the
    folder with the event files, as ``SummaryWriter.add_embedding`` lays it out): the files go to
    ``<log_dir>/<step, 5 digits>/<tag>/`` and ``<log_dir>/projector_config.pbtxt`` lists every
    step's entry (a step written again replaces its entry). Returns the config's path."""
    log_dir = Path(log_dir)
    sub = f"{int(step):05d}/{tag}"
    entry = _projector_files(embeddings, labels, thumbnails, log_dir / sub, class_names,
                             f"{tag}:{int(step):05d}", prefix=sub + "/")
    (log_dir / sub / PROJECTOR_ENTRY).write_text("\n".join(entry) + "\n", encoding="utf-8")
    entries = sorted(log_dir.glob(f"*/*/{PROJECTOR_ENTRY}"))
    path = log_dir / "projector_config.pbtxt"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(e.read_text(encoding="utf-8") for e in entries), encoding="utf-8")
    tmp.replace(path)
    return path


def checkpoint_projector(run_dir, log_dir=None, *, checkpoint=None, split: str = "test", limit: int = 1000,
                         thumb_size: int = 32, features: str = "backbone", device: str = "cpu") -> Path:
    """The projector files (:func:`write_projector`) for a checkpoint's embeddings of ``split``
    (at most ``limit`` images, cached by :func:`backend.inspect.compute_embeddings`) with their
    images as ``thumb_size`` thumbnails; default folder ``<run>/tensorboard/projector-<checkpoint>``
    (open with ``tensorboard --logdir <run>/tensorboard``). Returns the config's path."""
    import torch.nn.functional as F

    from .inspect import compute_embeddings, split_images

    es = compute_embeddings(run_dir, checkpoint=checkpoint, split=split, limit=limit, features=features,
                            device=device)
    images, _, _ = split_images(run_dir, es.indices, split=split, checkpoint=checkpoint)
    thumbs = F.interpolate(images.float() / 255.0, size=(thumb_size, thumb_size), mode="bilinear",
                           align_corners=False, antialias=True)
    if log_dir is None:
        log_dir = Path(run_dir) / "tensorboard" / f"projector-{Path(es.checkpoint).stem}"
    return write_projector(es.features, es.labels, thumbs.numpy(), log_dir,
                           class_names=es.class_names if es.labels is not None else None)
