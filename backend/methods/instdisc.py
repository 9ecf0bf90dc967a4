"""Instance discrimination (Wu et al. 2018, "Unsupervised feature learning via non-parametric
instance discrimination").

Every training image is its own class. A memory bank holds one unit vector per image; a batch's
features (backbone + linear layer to ``model.projector_out_dim``, L2-normalised, as the paper's
128-d embedding) are scored against their own bank row (the positive) and ``num_negatives`` rows
drawn uniformly from the other images, and the bank rows of the batch are then moved towards the
new features (``bank_update``, momentum 0.5 as the paper). Loss (``loss``): ``"softmax"`` is the
non-parametric softmax over the positive and the m sampled negatives (the default here: it is
robust at small m and short runs), ``"nce"`` the paper's NCE with the partition function Z
estimated on the first batch and kept fixed (``estimate_partition``; stored in the bank's buffer
so a resumed run keeps it). One augmented view per image (``views[0]``), as the paper.

Choices for 32-96 px images: the paper's m = 4096 and t = 0.07 are kept; the bank is float32 on
the training device (50 000 x 128 floats = 25 MB for CIFAR-10).

Engine contract (``uses_indices``): the bank needs the number of training images, which the
config alone does not tell for image folders, so the engine calls ``method.prepare(n)`` once
after building the method (before loading a checkpoint), and ``method.set_batch_indices(idx)``
with the dataset indices of every (micro-)batch before its step. A checkpoint holds the bank
(buffer ``bank.rows``); ``load_state_dict`` re-sizes the bank to the checkpoint's, so restoring
for eval/inspect/export works without ``prepare``. The negatives' sampler is a CPU generator
whose state is in ``state_extras`` (exact resume).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..distributed import gather_no_grad
from ..errors import ConfigError
from ..pretext.memory_bank import (bank_update, estimate_partition, memory_bank_info_nce,
                                   memory_bank_nce, sample_negatives)
from . import register
from .base import Method, StepOutput
from .spec import CONTRASTIVE, MethodSpec, Param, temperature



SPEC = MethodSpec(
    paper="Wu et al. 2018, Unsupervised Feature Learning via Non-Parametric Instance Discrimination",
    name="instdisc", label="Instance discrimination", family=CONTRASTIVE,
    help="Memory bank of one unit vector per image, non-parametric softmax over sampled negatives.",
    params={"temperature": temperature(0.07),
            "num_negatives": Param(4096, "Memory-bank negatives drawn per image (the paper's m).", ge=1),
            "bank_momentum": Param(0.5, "Momentum of the memory-bank update (the paper: 0.5).",
                                   ge=0.0, lt=1.0),
            "bank_loss": Param("softmax", "Memory-bank loss: non-parametric softmax or the paper's NCE.",
                               choices=("softmax", "nce"))},
)


class MemoryBank(nn.Module):
    """One L2-normalised row per training image (buffer ``rows``, random unit vectors at first)
    and the NCE partition constant (buffer ``partition``, 0 until estimated)."""

    def __init__(self, dim: int, seed: int, size: int = 0):
        super().__init__()
        self.dim, self.seed = dim, seed
        self.register_buffer("rows", torch.zeros(0, dim))
        self.register_buffer("partition", torch.zeros(()))
        if size:
            self.resize(size)

    @property
    def size(self) -> int:
        return self.rows.shape[0]

    def resize(self, size: int) -> None:
        """Fresh random unit rows for ``size`` images (own generator: the global RNG is untouched)."""
        if size < 2:
            raise ConfigError(f"a memory bank needs at least 2 training images, got {size}")
        init = torch.randn(size, self.dim, generator=torch.Generator().manual_seed(self.seed))
        self.rows = F.normalize(init, dim=1).to(self.rows.device)
        self.partition.zero_()

    @torch.no_grad()
    def update(self, indices: torch.Tensor, features: torch.Tensor, momentum: float) -> None:
        """Move the rows of ``indices`` towards ``features`` (every rank's, so banks agree)."""
        indices = gather_no_grad(indices.to(self.rows.device))
        features = gather_no_grad(features.detach().float())
        self.rows[indices] = bank_update(self.rows[indices], features, momentum)

    def load_rows_shape(self, state_dict: dict, prefix: str) -> None:
        """Take the bank size of a checkpoint before its tensors are copied in."""
        rows = state_dict.get(prefix + "rows")
        if rows is not None and rows.shape != self.rows.shape:
            self.rows = torch.zeros(rows.shape, dtype=self.rows.dtype, device=self.rows.device)


class BankMethod(Method):
    """A method with a memory bank indexed by dataset index (instdisc, PIRL): the engine hooks
    ``prepare`` and ``set_batch_indices``, negatives sampling, bank-sized checkpoints."""

    uses_indices = True

    def __init__(self, cfg, bank_dim: int):
        super().__init__(cfg)
        self.bank = MemoryBank(bank_dim, cfg.runtime.seed + 13)
        self._indices: torch.Tensor | None = None
        self._negative_gen = torch.Generator().manual_seed(cfg.runtime.seed + 17)

    def prepare(self, num_train_images: int) -> None:
        """Engine hook, once before training: size the bank for the training split."""
        if self.bank.size != num_train_images:
            self.bank.resize(num_train_images)

    def set_batch_indices(self, indices: torch.Tensor) -> None:
        """Engine hook, before each step: the dataset indices of the batch's images."""
        self._indices = indices

    def batch_indices(self, n: int) -> torch.Tensor:
        """The indices set for this step, checked against the batch and the bank."""
        if self.bank.size == 0:
            raise ConfigError(f"{self.name}: the memory bank is not sized; the engine must call "
                              f"method.prepare(number of training images) before training")
        idx = self._indices
        if idx is None or idx.shape != (n,):
            raise ConfigError(f"{self.name}: needs the batch's {n} dataset indices via "
                              f"method.set_batch_indices before each step, got "
                              f"{None if idx is None else tuple(idx.shape)}")
        return idx.to(self.bank.rows.device).long()

    def bank_terms(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(positives (N, D), negatives (N, m, D)): the images' own rows and m sampled others."""
        count = self.cfg.method.num_negatives
        negatives = sample_negatives(idx, self.bank.size, count, self._negative_gen)
        return self.bank.rows[idx], self.bank.rows[negatives]

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        self.bank.load_rows_shape(state_dict, prefix + "bank.")
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def state_extras(self) -> dict:
        return {"negative_rng": self._negative_gen.get_state()}

    def load_state_extras(self, extras: dict) -> None:
        if "negative_rng" in extras:
            self._negative_gen.set_state(extras["negative_rng"])


@register(SPEC)
class InstDisc(BankMethod):
    def __init__(self, cfg):
        super().__init__(cfg, cfg.model.projector_out_dim)
        self.projector = nn.Linear(self.feature_dim, cfg.model.projector_out_dim)

    def bank_loss(self, v, positive, negatives) -> torch.Tensor:
        """The configured loss of features ``v`` against bank rows (NCE fixes Z on first use)."""
        m = self.cfg.method
        if m.bank_loss == "softmax":
            return memory_bank_info_nce(v, positive, negatives, m.temperature)
        if float(self.bank.partition) == 0.0:
            self.bank.partition.copy_(estimate_partition(v, negatives, self.bank.size, m.temperature))
        return memory_bank_nce(v, positive, negatives, self.bank.size, m.temperature,
                               partition=self.bank.partition)

    def training_step(self, views, labels, progress):
        x = views[0]
        idx = self.batch_indices(x.shape[0])
        v = self.projector(self.backbone(x))
        positive, negatives = self.bank_terms(idx)
        loss = self.bank_loss(v, positive, negatives)
        self.bank.update(idx, v, self.cfg.method.bank_momentum)
        return StepOutput(loss=loss, z1=v, extras={"positive_similarity": (
            F.normalize(v.detach().float(), dim=1) * positive.float()).sum(dim=1).mean()})
