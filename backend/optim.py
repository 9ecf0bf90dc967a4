"""Optimisers (SGD, LARS, AdamW) and the warm-up + cosine learning-rate schedule."""

from __future__ import annotations

import math

import torch
from torch import nn

from .config import ExperimentConfig


class LARS(torch.optim.Optimizer):
    """LARS (You et al. 2017) as used by SimCLR/BYOL: SGD with momentum whose update for each
    weight matrix is scaled by eta * ||w|| / ||g + wd*w||. Groups with ``lars=False`` (biases and
    norm layers) get plain SGD with momentum and no adaptation."""

    def __init__(self, params, lr, momentum=0.9, weight_decay=0.0, eta=0.02):
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay, eta=eta, lars=True))

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                if group["weight_decay"]:
                    grad = grad.add(p, alpha=group["weight_decay"])
                if group["lars"]:
                    w_norm, g_norm = torch.norm(p), torch.norm(grad)
                    trust = torch.where((w_norm > 0) & (g_norm > 0), group["eta"] * w_norm / g_norm,
                                        torch.ones_like(w_norm))
                    grad = grad.mul(trust)
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = grad.clone()
                else:
                    state["momentum_buffer"].mul_(group["momentum"]).add_(grad)
                p.add_(state["momentum_buffer"], alpha=-group["lr"])
        return loss


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two groups: weights with decay (and LARS adaptation), biases/norm parameters without."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim <= 1 else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0, "lars": False}]


def peak_lr(cfg: ExperimentConfig) -> float:
    """The configured base lr scaled linearly with the global batch size (base is per 256)."""
    return cfg.optim.lr * cfg.optim.batch_size / 256


def build_optimizer(model: nn.Module, cfg: ExperimentConfig, *, fused: bool = False) -> torch.optim.Optimizer:
    """The optimiser named by ``optim.optimizer`` over the model's trainable parameters."""
    o = cfg.optim
    groups = parameter_groups(model, o.weight_decay)
    lr = peak_lr(cfg)
    if o.optimizer == "lars":
        return LARS(groups, lr=lr, momentum=o.momentum, weight_decay=o.weight_decay, eta=o.lars_eta)
    for g in groups:
        g.pop("lars", None)
    extra = {"fused": True} if fused else {}
    if o.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=lr, weight_decay=o.weight_decay, **extra)
    return torch.optim.SGD(groups, lr=lr, momentum=o.momentum, weight_decay=o.weight_decay, **extra)


def lr_at(step: int, total_steps: int, warmup_steps: int, peak: float, min_ratio: float = 0.0) -> float:
    """Linear warm-up to ``peak`` over ``warmup_steps``, then half-cosine down to ``peak*min_ratio``."""
    if warmup_steps > 0 and step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    floor = peak * min_ratio
    return floor + (peak - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set the learning rate of every parameter group."""
    for group in optimizer.param_groups:
        group["lr"] = lr
