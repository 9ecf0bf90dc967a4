"""The run's optimiser: ``backend.optim.build_optimizer`` plus two options applied on top of it,
Nesterov momentum (``optim.nesterov``) and a learning-rate factor for the backbone
(``optim.backbone_lr_scale``, e.g. 0.1 when fine-tuning), and the scheduled-lr setter that
honours that factor."""

from __future__ import annotations

import torch

from ..config import ExperimentConfig
from ..optim import build_optimizer


def configure_optimizer(method: torch.nn.Module, cfg: ExperimentConfig, *, fused: bool) -> torch.optim.Optimizer:
    """The optimiser of ``method``; with a backbone lr scale other than 1 every parameter group is
    split into its backbone part (first, ``lr_scale`` = the scale) and the rest (``lr_scale`` 1)."""
    optimizer = build_optimizer(method, cfg, fused=fused)
    if cfg.optim.nesterov:
        for group in optimizer.param_groups:
            group["nesterov"] = True
    scale = cfg.optim.backbone_lr_scale
    if scale != 1.0:
        backbone = {id(p) for p in method.backbone.parameters()}
        groups = []
        for group in optimizer.param_groups:
            for part, factor in ((True, scale), (False, 1.0)):
                params = [p for p in group["params"] if (id(p) in backbone) == part]
                if params:
                    groups.append({**group, "params": params, "lr_scale": factor})
        optimizer.param_groups.clear()
        for group in groups:
            optimizer.add_param_group(group)
    return optimizer


def set_scheduled_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every group's learning rate to ``lr`` times the group's ``lr_scale`` (1 when absent)."""
    for group in optimizer.param_groups:
        scale = group.get("lr_scale", 1.0)
        group["lr"] = lr if scale == 1.0 else lr * scale
