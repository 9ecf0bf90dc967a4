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
    split into its backbone part (first, ``lr_scale`` = the scale) and the rest (``lr_scale`` 1).
    Parameters the method names in ``fixed_lr_parameters()`` go to groups marked ``fixed_lr``."""
    optimizer = build_optimizer(method, cfg, fused=fused)
    if cfg.optim.nesterov:
        for group in optimizer.param_groups:
            group["nesterov"] = True
    fixed = {id(p) for p in getattr(method, "fixed_lr_parameters", lambda: [])()}
    if fixed:
        _split_groups(optimizer, lambda p: id(p) in fixed, {"fixed_lr": True}, {})
    scale = cfg.optim.backbone_lr_scale
    if scale != 1.0:
        backbone = {id(p) for p in method.backbone.parameters()}
        _split_groups(optimizer, lambda p: id(p) in backbone, {"lr_scale": scale}, {"lr_scale": 1.0})
    return optimizer


def _split_groups(optimizer, select, marks_in: dict, marks_out: dict) -> None:
    """Split every parameter group into the parameters ``select`` picks (first, ``marks_in`` added)
    and the rest (``marks_out`` added), in place."""
    groups = []
    for group in optimizer.param_groups:
        for part, marks in ((True, marks_in), (False, marks_out)):
            params = [p for p in group["params"] if bool(select(p)) == part]
            if params:
                groups.append({**group, "params": params, **marks})
    optimizer.param_groups.clear()
    for group in groups:
        optimizer.add_param_group(group)


def set_scheduled_lr(optimizer: torch.optim.Optimizer, lr: float, *, peak: float | None = None) -> None:
    """Set every group's learning rate to ``lr`` times the group's ``lr_scale`` (1 when absent);
    groups marked ``fixed_lr`` (SimSiam's predictor with ``fix_pred_lr``) get ``peak`` times it
    instead, the base lr without warm-up or cosine."""
    for group in optimizer.param_groups:
        scale = group.get("lr_scale", 1.0)
        base = peak if (group.get("fixed_lr") and peak is not None) else lr
        group["lr"] = base if scale == 1.0 else base * scale
