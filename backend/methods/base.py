"""The Method interface: a method declares its networks, its EMA pairs and its loss; the one
training engine (backend/train.py) runs every method through this interface."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ..config import ExperimentConfig
from ..distributed import gather_with_grad
from ..models.backbones import backbone_family, build_backbone
from ..models.heads import mlp_head
from .components import cosine_momentum, ema_update


@dataclass
class StepOutput:
    """What one training step of a method returns."""

    loss: torch.Tensor
    # Projections of the first two global views (for alignment); may be None for label methods.
    z1: torch.Tensor | None = None
    z2: torch.Tensor | None = None
    # Method-specific scalars for the event stream, e.g. {"queue_fill": tensor(0.5)}.
    extras: dict = field(default_factory=dict)


class Method(nn.Module):
    """Base class. A subclass is registered with ``@register(SPEC)`` (its module's MethodSpec gives
    it ``spec``, ``name``, ``label``, ``families`` and ``uses_labels``), builds heads in
    ``__init__`` and implements ``training_step``; it lists (online, target) module pairs in
    ``momentum_pairs`` when it keeps an EMA copy, and the engine updates those after each
    optimiser step. It reads its hyperparameters as ``self.cfg.method.<field>``."""

    spec = None                    # set by @register(SPEC)
    name = ""
    label = ""
    families = ("cnn", "vit")      # backbone families the method supports (spec.backbones)
    uses_labels = False            # supervised baselines need labelled data (spec.uses_labels)
    cosine_momentum_schedule = False  # EMA momentum rises from method.momentum to momentum_final

    def __init__(self, cfg: ExperimentConfig):
        super().__init__()
        self.cfg = cfg
        # The true epoch (float, step / steps_per_epoch), set by the engine before every step, so
        # recipes counted in epochs follow it also when schedule.max_steps cuts the run short.
        # None (a method used outside the engine): derived from progress * schedule.epochs.
        self.epoch: float | None = None
        self.backbone, self.feature_dim = build_backbone(cfg.model.backbone, cfg.data.image_size,
                                                         drop_path_rate=cfg.model.drop_path_rate,
                                                         vit_pool=cfg.model.vit_pool)
        self.family = backbone_family(cfg.model.backbone)

    # --- parts every method reuses -------------------------------------------------------------
    def projector_head(self, in_dim: int | None = None, **kwargs) -> nn.Module:
        """An MLP projection head sized from the model config."""
        m = self.cfg.model
        return mlp_head(in_dim or self.feature_dim, m.projector_hidden_dim, m.projector_out_dim,
                        m.projector_layers, **kwargs)

    def predictor_head(self, **kwargs) -> nn.Module:
        """The 2-layer prediction MLP of BYOL, SimSiam, NNCLR and MoCo v3: projector_out_dim ->
        predictor_hidden_dim -> projector_out_dim (a bottleneck when the hidden width is smaller)."""
        m = self.cfg.model
        return mlp_head(m.projector_out_dim, m.predictor_hidden_dim, m.projector_out_dim, 2, **kwargs)

    def epoch_now(self, progress: float) -> float:
        """The current epoch (float): the engine's ``epoch`` when set, else ``progress * epochs``."""
        return self.epoch if self.epoch is not None else progress * self.cfg.schedule.epochs

    def fixed_lr_parameters(self) -> list[nn.Parameter]:
        """Parameters whose learning rate stays at the base lr (no warm-up or cosine); none by default."""
        return []

    def momentum_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        """(online, target) pairs whose targets follow the online weights by EMA."""
        return []

    def current_momentum(self, progress: float) -> float:
        """EMA momentum at training progress in [0, 1]."""
        m = self.cfg.method
        if self.cosine_momentum_schedule:
            return cosine_momentum(m.momentum, m.momentum_final, progress)
        return m.momentum

    def before_optimizer_step(self, progress: float) -> None:
        """Hook between backward and the optimiser step (e.g. cancel gradients of frozen parts)."""

    @torch.no_grad()
    def after_optimizer_step(self, progress: float) -> dict:
        """Update EMA targets; returns extras for the event stream."""
        pairs = self.momentum_pairs()
        if not pairs:
            return {}
        momentum = self.current_momentum(progress)
        for online, target in pairs:
            ema_update(online, target, momentum)
        return {"momentum": momentum}

    def forward(self, views, labels=None, progress: float = 0.0) -> StepOutput:
        """The training step as ``forward`` so DistributedDataParallel can wrap the method."""
        return self.training_step(views, labels, progress)

    # --- what subclasses implement -------------------------------------------------------------
    def training_step(self, views: list[torch.Tensor], labels: torch.Tensor | None,
                      progress: float) -> StepOutput:
        """Loss (and projections) for one batch of views; ``progress`` in [0, 1]."""
        raise NotImplementedError

    def project(self, features: torch.Tensor) -> torch.Tensor:
        """Projector output used for the representation metrics (default: ``self.projector``)."""
        return self.projector(features)

    @torch.no_grad()
    def embed(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(backbone features, projector output) of already-normalised images."""
        features = self.feature_encoder()(x)
        return features, self.project(features)

    # --- what the evaluations feed the backbone -----------------------------------------------
    @classmethod
    def input_adapter(cls, cfg: ExperimentConfig) -> nn.Module | None:
        """A parameter-free module mapping normalised RGB images to what this method's backbone
        trains on, for kNN, the linear probe, the embeddings and the export; None (the default)
        when the backbone trains on the normalised views as they are. A classmethod, so an export
        can be rebuilt from its config without building the method."""
        return None

    def feature_encoder(self, projector: bool = False) -> nn.Module:
        """Normalised RGB images -> the features every evaluation uses: ``input_adapter`` (when
        the method has one), the backbone, and the projector when ``projector``. In the
        backbone's train/eval mode."""
        adapter = type(self).input_adapter(self.cfg)
        parts = ([] if adapter is None else [adapter.to(_device_of(self.backbone))]) + [self.backbone]
        parts += [self.projector] if projector else []
        if len(parts) == 1:
            return self.backbone
        return nn.Sequential(*parts).train(self.backbone.training)


def _device_of(module: nn.Module) -> torch.device:
    """The device of a module's first parameter or buffer (the CPU when it has none)."""
    for tensor in (*module.parameters(), *module.buffers()):
        return tensor.device
    return torch.device("cpu")


class PairLossMethod(Method):
    """Two global views through backbone + MLP projector, one loss on the pair of projections
    (SimCLR, DCL, Barlow Twins, VICReg). Each view goes through the network on its own, so
    batch norm normalises each branch separately; under torchrun the loss sees the projections
    of every rank (gathered with gradient). Subclasses implement only ``loss``."""

    def __init__(self, cfg: ExperimentConfig):
        super().__init__(cfg)
        self.projector = self.projector_head()

    def training_step(self, views, labels, progress):
        # Global views only (multi-crop locals, if configured, are not used by these methods).
        z1, z2 = (self.projector(self.backbone(v)) for v in views[:2])
        return StepOutput(loss=self.loss(gather_with_grad(z1), gather_with_grad(z2)), z1=z1, z2=z2)

    def loss(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        """The method's loss on the (globally gathered) projections of the two views."""
        raise NotImplementedError
