"""ExperimentConfig: the typed, nested experiment description shared by CLI, trainer and GUI.

Every field carries its help text and constraints as dataclass metadata (``spec(...)``), so one
schema drives validation (with field paths), TOML/JSON round-trips and the GUI's generated forms.
The ``[method]`` section is derived from the method registry (``backend.method_config``) and the
data source kinds from the source registry (``backend.data.registry``); neither imports torch,
so validating a config never does.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_type_hints

from .config_augment import VIEW_TABLES, AugmentConfig, ViewAugmentConfig, augment_errors
from .config_fields import coerce, iter_fields, range_errors, spec
from .data.registry import source_help, source_problem
from .errors import ConfigError
from .method_config import (MethodConfig, applies_to, build_method_section, method_config,
                            method_name_errors, param_meta)

__all__ = ["AugmentConfig", "ViewAugmentConfig", "DataConfig", "EvalConfig", "ExperimentConfig", "MethodConfig", "ModelConfig",
           "OptimConfig", "RuntimeConfig", "ScheduleConfig", "applies_to", "deep_merge", "field_meta",
           "iter_fields", "list_presets", "load_config", "load_preset", "method_config", "parse_override",
           "preset_dict", "read_config_dict", "spec", "validation_errors"]

PRESET_DIR = Path(__file__).resolve().parent.parent / "resources" / "presets"

BACKBONES = ("tiny_cnn", "resnet18", "resnet34", "resnet50", "vit_tiny", "vit_small")
OPTIMIZERS = ("sgd", "lars", "adamw")
GRAD_CLIP_MODES = ("global", "per_parameter")
WD_POLICY_CHOICES = ("exclude_norm_bias", "all")  # backend.optim.WD_POLICIES (torch-free copy)
LARS_TRUST_CHOICES = ("simclr", "solo")
MEMORY_MODES = ("auto", "ram", "mmap")  # backend.training.feed (torch-free copy)  # backend.optim.LARS_TRUST_FORMS


@dataclass
class DataConfig:
    source: str = spec("synthetic", source_help())
    image_size: int = spec(32, "Side length (pixels) images are cached and trained at.", ge=8, le=512)
    train_limit: int = spec(0, "Use at most this many training images (0 = all).", ge=0)
    test_limit: int = spec(0, "Use at most this many held-out images for kNN (0 = all).", ge=0)
    synthetic_train_size: int = spec(2000, "Synthetic source: number of training images.", ge=10)
    synthetic_test_size: int = spec(500, "Synthetic source: number of held-out images.", ge=10)
    val_fraction: float = spec(0.1, "Image folders without train/test subfolders: held-out fraction.",
                               ge=0.0, lt=1.0)
    classes_file: str = spec("", "Image folders: use only the class folders named in this text file (one a line; a "
                             "bare name is looked up in resources/, e.g. imagenet100_classes.txt, the CMC "
                             "ImageNet-100 list); '' = every class.")
    stl10_unlabeled: bool = spec(False, "STL-10: the training split is the 5,000 labelled train images plus the "
                                 "100,000 unlabelled ones (torchvision 'train+unlabeled', the usual "
                                 "self-supervised setting); that split is unlabelled, so the online kNN is skipped.")
    download_root: str = spec("", "Where torchvision data sets are downloaded (empty = ~/.cache/sslwb/downloads).")
    cache_dir: str = spec("", "Where decoded uint8 caches live (empty = ~/.cache/sslwb/cache).")
    memory: str = spec("auto", "How training reads the training cache: 'ram' loads it whole (onto the GPU when "
                       "training there); 'mmap' memory-maps it and a background thread gathers each batch "
                       "(pinned, sent without blocking), so RAM stays bounded whatever the data set's size; "
                       "'auto' keeps it whole when it fits (GPU: half its free memory; CPU: half the available "
                       "RAM shared by this node's ranks) and maps it otherwise. Same batches either way.",
                       choices=MEMORY_MODES)


@dataclass
class ModelConfig:
    backbone: str = spec("resnet18", "Encoder network: a built-in name, torchvision:<model> (any torchvision "
                         "classification model, random init) or timm:<model> (needs the timm extra).",
                         suggestions=BACKBONES + ("torchvision:resnet50", "torchvision:convnext_tiny",
                                                  "timm:resnet18", "timm:vit_small_patch16_224"))
    projector_hidden_dim: int = spec(2048, "Projection head hidden width.", ge=1)
    projector_out_dim: int = spec(128, "Projection head output dimension.", ge=1)
    projector_layers: int = spec(2, "Projection head depth (linear layers).", ge=1, le=4)
    predictor_hidden_dim: int = spec(512, "Prediction head hidden width (methods with a predictor).",
                                     ge=1, method_specific=True)
    drop_path_rate: float = spec(0.0, "Built-in ViT backbones: stochastic depth, the largest probability of "
                                 "skipping a block's residual branch in training, rising linearly over the "
                                 "depth (DINO ViT-S: 0.1; 0 = off).", ge=0.0, lt=1.0)
    vit_pool: str = spec("cls", "Built-in ViT backbones: the features every evaluation reads, the CLS token "
                         "(cls) or the mean of the patch tokens (mean; MAE's global pooling).",
                         choices=("cls", "mean"))
    init_checkpoint: str = spec("", "Start the backbone from this checkpoint's backbone weights (fine-tuning); "
                                "'' = random initialisation.")
    source_run: str = spec("", "Fine-tuning: the run directory whose evaluations.jsonl also receives the "
                           "final result ('' = only this run's).", method_specific=True)


@dataclass
class OptimConfig:
    optimizer: str = spec("sgd", "Optimiser.", choices=OPTIMIZERS)
    lr: float = spec(0.06, "Base learning rate for a batch of 256 (scaled linearly by batch size).", gt=0.0)
    weight_decay: float = spec(5e-4, "Weight decay.", ge=0.0)
    momentum: float = spec(0.9, "SGD/LARS momentum.", ge=0.0, lt=1.0)
    adam_beta1: float = spec(0.9, "AdamW: decay of the gradient's running mean (beta1; MAE 0.9, the context "
                             "encoder 0.5).", ge=0.0, lt=1.0)
    adam_beta2: float = spec(0.999, "AdamW: decay of the squared gradient's running mean (beta2; MAE 0.95, "
                             "colorization 0.99).", ge=0.0, lt=1.0)
    batch_size: int = spec(256, "Images per optimisation step (global, over all devices).", ge=2)
    grad_accum_steps: int = spec(1, "Micro-batches accumulated per optimisation step (for small GPUs: the "
                                "optimiser sees batch_size, the lr is scaled for batch_size). Contrastive "
                                "negatives and batch statistics stay per micro-batch (batch_size / grad_accum_steps) "
                                "unless the method keeps a queue (MoCo, NNCLR).", ge=1)
    lars_eta: float = spec(0.02, "LARS trust coefficient.", gt=0.0)
    grad_clip: float = spec(0.0, "Clip the gradient norm to this value (0 = off).", ge=0.0)
    grad_clip_mode: str = spec("global", "Gradient clipping: global (one norm over all parameters, "
                               "clip_grad_norm_) or per_parameter (each parameter's norm on its own, DINO's "
                               "clip_gradients).", choices=GRAD_CLIP_MODES)
    weight_decay_policy: str = spec("exclude_norm_bias", "Which parameters are decayed: exclude_norm_bias "
                                    "(biases and norm parameters get no decay and no LARS adaptation) or all "
                                    "(every parameter, as lightly's and the official MoCo/SimSiam code).",
                                    choices=WD_POLICY_CHOICES)
    weight_decay_end: float = spec(0.0, "Cosine ramp of the weight decay from optim.weight_decay to this value "
                                   "over the run, updated every step (DINO: 0.04 -> 0.4; 0 = constant).", ge=0.0)
    lars_trust: str = spec("simclr", "LARS trust ratio: simclr (eta*||w||/||g+wd*w||) or solo (solo-learn: "
                           "eta*||w||/(||g||+wd*||w||), unadapted parameters get no decay).",
                           choices=LARS_TRUST_CHOICES)
    lars_clip_lr: bool = spec(False, "LARS: clip the trust ratio at the learning rate (solo-learn's clip_lr).")
    lars_exclude_bias_n_norm: bool = spec(False, "LARS: 1-D parameters (biases, norms) skip the adaptation "
                                          "(solo-learn's exclude_bias_n_norm).")
    nesterov: bool = spec(False, "Nesterov momentum (SGD only).")
    backbone_lr_scale: float = spec(1.0, "Backbone learning rate = this x the scheduled one (heads keep 1; "
                                    "0 freezes the backbone's weights, e.g. 0.1 when fine-tuning).", ge=0.0)


@dataclass
class ScheduleConfig:
    epochs: int = spec(100, "Training epochs.", ge=1)
    warmup_epochs: float = spec(10.0, "Linear warm-up length in epochs.", ge=0.0)
    min_lr_ratio: float = spec(0.0, "Final learning rate as a fraction of the peak.", ge=0.0, le=1.0)
    max_steps: int = spec(0, "Stop after this many optimisation steps (0 = run all epochs).", ge=0)


@dataclass
class EvalConfig:
    knn_k: int = spec(200, "kNN: number of neighbours.", ge=1)
    knn_temperature: float = spec(0.1, "kNN: temperature of the similarity weights.", gt=0.0)
    knn_every_epochs: int = spec(1, "Run kNN every this many epochs (0 = only at the end).", ge=0)
    knn_train_limit: int = spec(0, "kNN: at most this many training images in the bank (0 = the whole "
                                "training split, so results compare across runs and papers).", ge=0)
    metrics_every_steps: int = spec(20, "Representation metrics on the probe batch every N steps.", ge=1)
    probe_batch_size: int = spec(256, "Fixed probe batch size for alignment/uniformity/rank.", ge=16)
    spectrum_every_steps: int = spec(200, "Eigenspectrum (alpha-ReQ, RankMe) of the probe batch every N steps "
                                          "(0 = off).", ge=0)


@dataclass
class RuntimeConfig:
    device: str = spec("auto", "Training device: auto, cpu, cuda or cuda:N.")
    seed: int = spec(0, "Random seed.", ge=0)
    amp: str = spec("auto", "Mixed precision: auto (bf16 on CUDA), bf16 or off.", choices=("auto", "bf16", "off"))
    channels_last: bool = spec(True, "Use channels_last memory format for CNN backbones.")
    compile: bool = spec(False, "torch.compile the model (CUDA; pays off on long runs).")
    num_threads: int = spec(0, "CPU threads for torch (0 = torch's default).", ge=0)
    checkpoint_every_epochs: int = spec(1, "Write checkpoints/last.pt every N epochs.", ge=1)
    keep_epoch_checkpoints: bool = spec(False, "Also keep checkpoints/epoch-NNNN.pt for every checkpoint.")
    tensorboard: bool = spec(False, "Also log to <run>/tensorboard/ for TensorBoard: every metric as a scalar, "
                             "augmentation pairs, the embedding projector at each checkpoint (needs the "
                             "tensorboard extra: pip install 'ssl-workbench[tensorboard]').")


@dataclass
class ExperimentConfig:
    name: str = spec("", "Free-form run name.")
    data: DataConfig = spec(DataConfig(), "Data set and caching.", factory=True)
    augment: AugmentConfig = spec(AugmentConfig(), "View generation.", factory=True)
    model: ModelConfig = spec(ModelConfig(), "Backbone and heads.", factory=True)
    method: MethodConfig = dataclasses.field(default_factory=method_config,
                                             metadata={"help": "Method and its hyperparameters."})
    optim: OptimConfig = spec(OptimConfig(), "Optimiser.", factory=True)
    schedule: ScheduleConfig = spec(ScheduleConfig(), "Epochs and learning-rate schedule.", factory=True)
    eval: EvalConfig = spec(EvalConfig(), "Online evaluation.", factory=True)
    runtime: RuntimeConfig = spec(RuntimeConfig(), "Device, precision, seed, checkpoints.", factory=True)

    # ---- conversions -------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """Plain nested dict (JSON/TOML-serialisable); unset (None) per-view augment overrides are
        left out, so ``[augment.view1]`` etc. hold only the fields that differ."""
        out = dataclasses.asdict(self)
        for table in VIEW_TABLES:
            out["augment"][table] = {k: v for k, v in out["augment"][table].items() if v is not None}
        return out

    @classmethod
    def from_dict(cls, data: dict, *, validate: bool = True) -> "ExperimentConfig":
        """Build from a (possibly partial) nested dict over the defaults; raises ConfigError listing
        every unknown key, wrong type and out-of-range value with its field path."""
        errors: list[str] = []
        cfg = _build(cls, data or {}, "", errors)
        if validate:
            errors.extend(validation_errors(cfg))
        if errors:
            raise ConfigError(errors)
        return cfg

    def updated(self, overrides: dict) -> "ExperimentConfig":
        """A copy with nested ``overrides`` applied (and validated)."""
        return ExperimentConfig.from_dict(deep_merge(self.to_dict(), overrides))

    def save(self, path) -> None:
        """Write as JSON or TOML, chosen by the file suffix."""
        path = Path(path)
        if path.suffix == ".toml":
            import tomli_w
            text = tomli_w.dumps(self.to_dict())
        else:
            text = json.dumps(self.to_dict(), indent=2) + "\n"
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text)
        tmp.replace(path)


def deep_merge(base: dict, overrides: dict) -> dict:
    """Recursively merge ``overrides`` into a copy of ``base``."""
    out = copy.deepcopy(base)
    for key, value in (overrides or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _build(cls, data, prefix: str, errors: list):
    """Instantiate dataclass ``cls`` from ``data``, recording problems in ``errors``."""
    if not isinstance(data, dict):
        errors.append(f"{prefix.rstrip('.') or 'config'} must be a table/object, got {type(data).__name__}")
        return cls()
    hints = get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    for key in data:
        if key not in known:
            errors.append(f"{prefix}{key} is not a known field (known: {', '.join(sorted(known))})")
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        tp = hints[f.name]
        path = prefix + f.name
        if tp is MethodConfig:
            kwargs[f.name] = build_method_section(data[f.name], path + ".", errors)
        elif dataclasses.is_dataclass(tp):
            kwargs[f.name] = _build(tp, data[f.name], path + ".", errors)
        else:
            value = coerce(data[f.name], tp, path, errors)
            if value is not None:
                kwargs[f.name] = value
    return cls(**kwargs)


EXTERNAL_BACKBONE = re.compile(r"^(torchvision|timm):[A-Za-z0-9_.\-]+$")


def backbone_name_errors(name: str) -> list[str]:
    """Torch-free check of ``model.backbone``: a built-in name or ``torchvision:``/``timm:`` plus a
    model name (whether the library knows the model is checked when the trainer builds it)."""
    if name in BACKBONES or EXTERNAL_BACKBONE.match(name):
        return []
    return [f"model.backbone must be one of {', '.join(BACKBONES)}, torchvision:<model> or timm:<model>, "
            f"got {name!r}"]


def validation_errors(cfg: ExperimentConfig) -> list[str]:
    """Every problem with ``cfg`` as 'field.path must ..., got ...' sentences (empty when valid)."""
    errors: list[str] = []
    for path, f, value in iter_fields(cfg):
        errors.extend(range_errors(path, f.metadata, value))
    errors.extend(method_name_errors(cfg.method.name))
    errors.extend(backbone_name_errors(cfg.model.backbone))
    errors.extend(augment_errors(cfg.augment, cfg.data.image_size))
    src = cfg.data.source
    if source_problem(src):
        errors.append(source_problem(src))
    if cfg.optim.batch_size % cfg.optim.grad_accum_steps:
        errors.append(f"optim.batch_size must be divisible by optim.grad_accum_steps "
                      f"({cfg.optim.grad_accum_steps}), got {cfg.optim.batch_size}")
    if src == "synthetic" and cfg.optim.batch_size > cfg.data.synthetic_train_size:
        errors.append(f"optim.batch_size must be <= data.synthetic_train_size "
                      f"({cfg.data.synthetic_train_size}), got {cfg.optim.batch_size}")
    if 0 < cfg.data.train_limit < cfg.optim.batch_size:
        errors.append(f"optim.batch_size must be <= data.train_limit ({cfg.data.train_limit}, the training "
                      f"images used), got {cfg.optim.batch_size}")
    if cfg.schedule.warmup_epochs > cfg.schedule.epochs:
        errors.append(f"schedule.warmup_epochs must be <= schedule.epochs ({cfg.schedule.epochs}), "
                      f"got {cfg.schedule.warmup_epochs}")
    if cfg.optim.nesterov and (cfg.optim.optimizer != "sgd" or cfg.optim.momentum == 0):
        errors.append(f"optim.nesterov needs optim.optimizer = 'sgd' with optim.momentum > 0, got "
                      f"{cfg.optim.optimizer!r} with momentum {cfg.optim.momentum:g}")
    dev = cfg.runtime.device
    if not (dev in ("auto", "cpu", "cuda") or (dev.startswith("cuda:") and dev[5:].isdigit())):
        errors.append(f"runtime.device must be auto, cpu, cuda or cuda:N, got {dev!r}")
    return errors


def field_meta(path: str, method: str | None = None) -> dict:
    """Metadata (help, choices, bounds) of the field at dotted ``path``; a method hyperparameter
    as ``method`` declares it (or as the first method declaring it does)."""
    section, _, leaf_name = path.partition(".")
    if section == "method" and leaf_name != "name":
        meta = param_meta(leaf_name, method)
        if meta is None:
            raise KeyError(f"no method declares {path}")
        return meta
    obj = ExperimentConfig()
    *parents, leaf = path.split(".")
    for part in parents:
        obj = getattr(obj, part)
    return next(f.metadata for f in dataclasses.fields(obj) if f.name == leaf)


def read_config_dict(path) -> dict:
    """Parse a TOML or JSON config file into a dict; errors name the file and the problem."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    try:
        if path.suffix == ".toml":
            return tomllib.loads(text)
        return json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"config file {path} is not valid {path.suffix[1:].upper() or 'JSON'}: {exc}") from None


def list_presets() -> list[str]:
    """Names of the presets shipped in resources/presets."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.toml"))


def preset_dict(name: str) -> dict:
    """The raw overrides of preset ``name`` (a preset may name a ``base`` preset it extends)."""
    path = PRESET_DIR / f"{name}.toml"
    if not path.is_file():
        raise ConfigError(f"preset must be one of {', '.join(list_presets())}, got {name!r}")
    data = read_config_dict(path)
    base = data.pop("base", None)
    return deep_merge(preset_dict(base), data) if base else data


def load_preset(name: str) -> ExperimentConfig:
    """The validated config of preset ``name``."""
    return ExperimentConfig.from_dict(preset_dict(name))


def load_config(path, overrides: dict | None = None) -> ExperimentConfig:
    """Load a TOML/JSON config file (optionally naming a ``base`` preset) and validate it."""
    data = read_config_dict(path)
    base = data.pop("base", None)
    if base:
        data = deep_merge(preset_dict(base), data)
    return ExperimentConfig.from_dict(deep_merge(data, overrides or {}))


def parse_override(text: str) -> dict:
    """Turn 'optim.lr=0.1' into {'optim': {'lr': 0.1}} (value parsed as TOML/JSON when possible)."""
    if "=" not in text:
        raise ConfigError(f"override must look like section.field=value, got {text!r}")
    key, raw = text.split("=", 1)
    try:
        value: Any = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    out: dict = {}
    node = out
    parts = key.strip().split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return out
