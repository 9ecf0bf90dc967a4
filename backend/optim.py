"""Optimisers (SGD, LARS, AdamW), parameter groups (weight-decay policy), per-parameter gradient
clipping, and the warm-up + cosine learning-rate schedule."""

from __future__ import annotations

import torch
from torch import nn

from .config import LARS_TRUST_CHOICES, WD_POLICY_CHOICES, ExperimentConfig
from .schedules import cosine_ramp

LARS_TRUST_FORMS = LARS_TRUST_CHOICES
WD_POLICIES = WD_POLICY_CHOICES


class LARS(torch.optim.Optimizer):
    """LARS (You et al. 2017): SGD with momentum whose update of each parameter is scaled by a
    local trust ratio.

    ``trust="simclr"`` (default; SimCLR's TF optimiser): the decayed gradient ``d = g + wd*w`` is
    scaled by ``eta * ||w|| / ||d||`` (1 where a norm is 0).
    ``trust="solo"`` (solo-learn's ``solo/utils/lars.py``, Eq. 6 of the paper): ``d`` is scaled by
    ``eta * ||w|| / (||g|| + wd*||w|| + eps)``; a parameter that is not adapted (excluded, or with a
    zero weight or gradient norm) gets its raw gradient, without weight decay.
    ``clip_lr``: the ratio is divided by the group lr and clipped at 1 (``min(ratio / lr, 1)``), so
    the effective rate is ``min(lr, eta*||w||/...)``.
    Excluded from the adaptation: groups with ``lars=False``, and with ``exclude_bias_n_norm`` every
    1-D parameter (biases, norm scales/shifts). The momentum buffer starts at the first update
    (``v = d``, then ``v = momentum*v + d``); ``p -= lr * v``.
    """

    _OPTION_DEFAULTS = dict(lars=True, clip_lr=False, exclude_bias_n_norm=False, trust="simclr", eps=1e-8)

    def __init__(self, params, lr, momentum=0.9, weight_decay=0.0, eta=0.02, *, clip_lr=False,
                 exclude_bias_n_norm=False, trust="simclr", eps=1e-8):
        if trust not in LARS_TRUST_FORMS:
            raise ValueError(f"LARS trust must be one of {LARS_TRUST_FORMS}, got {trust!r}")
        if lr < 0 or eta <= 0 or momentum < 0 or weight_decay < 0 or eps < 0:
            raise ValueError(f"LARS needs lr >= 0, eta > 0, momentum >= 0, weight_decay >= 0, eps >= 0; "
                             f"got lr={lr}, eta={eta}, momentum={momentum}, weight_decay={weight_decay}, eps={eps}")
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay, eta=eta, lars=True,
                                      clip_lr=clip_lr, exclude_bias_n_norm=exclude_bias_n_norm, trust=trust,
                                      eps=eps))

    def __setstate__(self, state):
        super().__setstate__(state)
        for group in self.param_groups:  # optimiser state saved before these options existed
            for key, value in self._OPTION_DEFAULTS.items():
                group.setdefault(key, value)

    @staticmethod
    def _direction(p, group):
        """The (decayed, trust-scaled) update direction of one parameter."""
        grad, wd = p.grad, group["weight_decay"]
        adapt = group["lars"] and not (group["exclude_bias_n_norm"] and p.ndim == 1)
        if group["trust"] == "solo":
            if not adapt:
                return grad
            w_norm, g_norm = torch.norm(p), torch.norm(grad)
            ratio = LARS._clip(group["eta"] * w_norm / (g_norm + w_norm * wd + group["eps"]), group)
            # solo-learn leaves the raw gradient (no decay, no scaling) where a norm is 0
            return torch.where((w_norm > 0) & (g_norm > 0), grad.add(p, alpha=wd).mul(ratio), grad)
        if wd:
            grad = grad.add(p, alpha=wd)
        if not adapt:
            return grad
        w_norm, d_norm = torch.norm(p), torch.norm(grad)
        ratio = torch.where((w_norm > 0) & (d_norm > 0), LARS._clip(group["eta"] * w_norm / d_norm, group),
                            torch.ones_like(w_norm))
        return grad.mul(ratio)

    @staticmethod
    def _clip(ratio, group):
        return ratio.div(group["lr"]).clamp(max=1.0) if group["clip_lr"] else ratio

    @torch.no_grad()
    def step(self, closure=None):
        """One LARS update of every parameter that has a gradient."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                d = self._direction(p, group)
                state = self.state[p]
                if "momentum_buffer" not in state:
                    buf = state["momentum_buffer"] = d.clone()
                else:
                    buf = state["momentum_buffer"].mul_(group["momentum"]).add_(d)
                p.add_(buf, alpha=-group["lr"])
        return loss


def parameter_groups(model: nn.Module, weight_decay: float, policy: str = "exclude_norm_bias") -> list[dict]:
    """Parameter groups for a weight-decay policy (trainable parameters only).

    ``"exclude_norm_bias"`` (default): weights (ndim >= 2) with decay and LARS adaptation; biases and
    norm parameters (ndim <= 1) with no decay and no LARS adaptation (SimCLR, BYOL, DINO).
    ``"all"``: one group, every parameter decayed and adapted (lightly's CIFAR benchmark, SimSiam,
    MoCo). Each group carries ``decay`` (whether a weight-decay schedule applies to it).
    """
    if policy not in WD_POLICIES:
        raise ValueError(f"weight-decay policy must be one of {WD_POLICIES}, got {policy!r}")
    params = [p for p in model.parameters() if p.requires_grad]
    if policy == "all":
        return [{"params": params, "weight_decay": weight_decay, "decay": True}]
    decay = [p for p in params if p.ndim > 1]
    no_decay = [p for p in params if p.ndim <= 1]
    return [{"params": decay, "weight_decay": weight_decay, "decay": True},
            {"params": no_decay, "weight_decay": 0.0, "lars": False, "decay": False}]


def set_weight_decay(optimizer: torch.optim.Optimizer, weight_decay: float) -> None:
    """Set the weight decay of the decayed groups only (DINO's ``wd_schedule``); groups built
    without decay keep 0. Groups without a ``decay`` mark count as decayed when their decay is > 0."""
    for group in optimizer.param_groups:
        if group.get("decay", group["weight_decay"] > 0):
            group["weight_decay"] = weight_decay


@torch.no_grad()
def clip_grad_per_param_(parameters, clip: float) -> torch.Tensor:
    """Clip each parameter's gradient norm to ``clip`` separately (DINO's ``utils.clip_gradients``):
    ``g *= clip / (||g|| + 1e-6)`` where that factor is < 1. Returns the norms before clipping
    (one per parameter with a gradient), without a host sync."""
    if clip <= 0:
        raise ValueError(f"clip must be positive, got {clip}")
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return torch.zeros(0)
    norms = torch.stack([torch.linalg.vector_norm(g.detach(), 2).to(grads[0].device) for g in grads])
    coefs = (clip / (norms + 1e-6)).clamp(max=1.0)
    for g, c in zip(grads, coefs.unbind()):
        g.mul_(c.to(g.dtype))
    return norms


def peak_lr(cfg: ExperimentConfig) -> float:
    """The configured base lr scaled linearly with the global batch size (base is per 256)."""
    return cfg.optim.lr * cfg.optim.batch_size / 256


def build_optimizer(model: nn.Module, cfg: ExperimentConfig, *, fused: bool = False,
                    wd_policy: str | None = None, lars_trust: str | None = None,
                    lars_clip_lr: bool | None = None, lars_exclude_bias_n_norm: bool | None = None
                    ) -> torch.optim.Optimizer:
    """The optimiser named by ``optim.optimizer`` over the model's trainable parameters.

    The keyword options, when given, replace the config's ``optim.weight_decay_policy`` (see
    ``parameter_groups``) and, for LARS only, ``optim.lars_trust`` / ``lars_clip_lr`` /
    ``lars_exclude_bias_n_norm`` (see ``LARS``).
    """
    o = cfg.optim
    wd_policy = o.weight_decay_policy if wd_policy is None else wd_policy
    lars_trust = o.lars_trust if lars_trust is None else lars_trust
    lars_clip_lr = o.lars_clip_lr if lars_clip_lr is None else lars_clip_lr
    lars_exclude_bias_n_norm = o.lars_exclude_bias_n_norm if lars_exclude_bias_n_norm is None \
        else lars_exclude_bias_n_norm
    groups = parameter_groups(model, o.weight_decay, wd_policy)
    lr = peak_lr(cfg)
    if o.optimizer == "lars":
        return LARS(groups, lr=lr, momentum=o.momentum, weight_decay=o.weight_decay, eta=o.lars_eta,
                    clip_lr=lars_clip_lr, exclude_bias_n_norm=lars_exclude_bias_n_norm, trust=lars_trust)
    for g in groups:
        g.pop("lars", None)
    extra = {"fused": True} if fused else {}
    if o.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=(o.adam_beta1, o.adam_beta2), weight_decay=o.weight_decay,
                                 **extra)
    return torch.optim.SGD(groups, lr=lr, momentum=o.momentum, weight_decay=o.weight_decay, **extra)


def lr_at(step: int, total_steps: int, warmup_steps: int, peak: float, min_ratio: float = 0.0) -> float:
    """Linear warm-up to ``peak`` over ``warmup_steps``, then half-cosine down to ``peak*min_ratio``."""
    if warmup_steps > 0 and step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    return cosine_ramp(max(0, step - warmup_steps), span, peak, peak * min_ratio)


def wd_at(step: int, total_steps: int, cfg: ExperimentConfig) -> float:
    """The weight decay of ``step``: ``optim.weight_decay`` when ``optim.weight_decay_end`` is 0, else a
    half-cosine from ``weight_decay`` to ``weight_decay_end`` over ``total_steps`` (DINO's wd schedule)."""
    o = cfg.optim
    if not o.weight_decay_end:
        return o.weight_decay
    return cosine_ramp(step, max(1, total_steps), o.weight_decay, o.weight_decay_end)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set the learning rate of every parameter group."""
    for group in optimizer.param_groups:
        group["lr"] = lr
