"""MoCHi (Kalantidis et al. 2020, "Hard negative mixing for contrastive learning").

MoCo v2 (moco.py: query and momentum key encoders, queue, shuffled key BN, symmetrised loss) with,
per query, synthetic hard negatives mixed from the ``n_hard`` queue entries most similar to it:
``n_mix`` mixes of two of them and ``n_query_mix`` mixes of the query with one
(``backend.pretext.mochi.mochi_negatives``; constants, never enqueued), appended to the logits
(``info_nce_with_negatives``). Mixing starts after ``mix_start_epoch`` epochs (the paper
warms up with plain MoCo for its first epochs, while the queue still holds near-random keys);
before that the loss is MoCo v2's. The mixing randomness is a CPU generator kept in
``state_extras`` (exact resume).

Choices for 32-96 px images: with the CIFAR-size queue of 4096, N = 256, s = 256, s' = 128
(the paper writes MoCHi(N, s, s') and uses N up to 1024 against a 16k queue); n_hard is capped at
the queue size.
"""

from __future__ import annotations

import torch

from .. import losses
from ..distributed import gather_no_grad
from ..pretext.mochi import info_nce_with_negatives, mochi_negatives
from . import register
from .base import StepOutput
from .moco import MoCoV2
from .spec import CONTRASTIVE, MethodSpec, Param, momentum, queue_size, shuffle_bn, temperature


SPEC = MethodSpec(
    paper="Kalantidis et al. 2020, Hard Negative Mixing for Contrastive Learning",
    name="mochi", label="MoCHi", family=CONTRASTIVE,
    help="MoCo v2 with synthetic hard negatives mixed from the queue's hardest entries.",
    params={"temperature": temperature(0.2), "queue_size": queue_size(), "momentum": momentum(),
            "shuffle_bn": shuffle_bn(),
            "bn_splits": Param(4, "MoCo v2: with shuffle_bn, the number of BatchNorm groups the keys are "
                               "computed in.", ge=1, le=64),
            "split_query_bn": Param(False, "MoCo v2: with shuffle_bn, the queries are also computed in "
                                    "bn_splits groups."),
            "projector_bn": Param(True, "MoCo v2: BatchNorm in the projector's hidden layer."),
            "n_hard": Param(256, "MoCHi: hardest queue entries mixed per query (the paper's N).", ge=2),
            "n_mix": Param(256, "MoCHi: synthetic negatives mixed from two hard ones (s).", ge=0),
            "n_query_mix": Param(128, "MoCHi: synthetic negatives mixed with the query (s').", ge=0),
            "mix_start_epoch": Param(1.0, "MoCHi: epoch from which synthetic negatives are added.",
                                     ge=0.0)},
)


@register(SPEC)
class MoCHi(MoCoV2):
    def __init__(self, cfg):
        super().__init__(cfg)
        self._mix_gen = torch.Generator().manual_seed(cfg.runtime.seed + 23)

    def mixing(self, progress: float) -> bool:
        """Whether synthetic negatives are added at training ``progress``: from epoch
        ``mix_start_epoch`` on, counted in true epochs (``epoch_now``), so a run cut short by
        ``schedule.max_steps`` still warms up with plain MoCo for the same number of steps."""
        m = self.cfg.method
        return self.epoch_now(progress) >= m.mix_start_epoch and m.n_mix + m.n_query_mix > 0

    def hard_negatives(self, q: torch.Tensor, queue: torch.Tensor) -> torch.Tensor:
        """(N, s + s', D) synthetic negatives of queries ``q`` from ``queue`` (no gradient)."""
        m = self.cfg.method
        return mochi_negatives(q, queue, min(m.n_hard, queue.shape[0]), m.n_mix, m.n_query_mix,
                               generator=self._mix_gen)

    def training_step(self, views, labels, progress):
        pairs = self.query_key_views
        queries = {i: self.queries(views[i]) for i in sorted({a for a, _ in pairs})}
        keys = {i: self.keys(views[i]) for i in sorted({b for _, b in pairs})}
        negatives = self.queue.features.clone()
        t = self.cfg.method.temperature
        mix = self.mixing(progress)
        total = 0.0
        for a, b in pairs:
            if mix:
                extra = self.hard_negatives(queries[a], negatives)
                total = total + info_nce_with_negatives(queries[a], keys[b], negatives, extra, t)
            else:
                total = total + losses.info_nce(queries[a], keys[b], negatives, t)
        new_keys = torch.cat([keys[i] for i in sorted(keys)]).float()
        self.queue.push(gather_no_grad(torch.nn.functional.normalize(new_keys, dim=1)))
        extras = {"queue_fill": self.queue.fill_fraction(), "mixing": torch.tensor(float(mix))}
        return StepOutput(loss=total / len(pairs), z1=queries[0], z2=queries.get(1, keys.get(1)),
                          extras=extras)

    def state_extras(self) -> dict:
        return {**super().state_extras(), "mix_rng": self._mix_gen.get_state()}

    def load_state_extras(self, extras: dict) -> None:
        super().load_state_extras(extras)
        if "mix_rng" in extras:
            self._mix_gen.set_state(extras["mix_rng"])
