"""What a method declares about itself, without torch: its name, label, family, the backbone
families it supports, whether it needs labels, and its hyperparameters (``Param``).

This is a leaf module (standard library only). Each method module holds ``SPEC = MethodSpec(...)``
built from the names defined here only; ``backend.methods.catalog`` reads those SPEC expressions
from the modules' source without importing them, so config validation and the GUI never import
torch. The shared hyperparameters (``temperature()``, ``queue_size()``...) are declared once here
so methods that read the same field agree on its help text and bounds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Method families (the GUI groups its method picker by these).
PRETEXT = "pretext"
CONTRASTIVE = "contrastive"
DISTILLATION = "distillation"
REDUNDANCY_REDUCTION = "redundancy reduction"
CLUSTERING = "clustering"
MASKED_MODELLING = "masked modelling"
SUPERVISED = "supervised"
FAMILIES = (PRETEXT, CONTRASTIVE, DISTILLATION, REDUNDANCY_REDUCTION, CLUSTERING, MASKED_MODELLING,
            SUPERVISED)

BACKBONE_FAMILIES = ("cnn", "vit")
PARAM_TYPES = (bool, int, float, str)
RESERVED_NAMES = ("name",)  # the [method] section's own key


@dataclass(frozen=True)
class Param:
    """One hyperparameter: default, one-line help and allowed values/range (the type is the
    default's: bool, int, float or str)."""

    default: object
    help: str
    choices: tuple | None = None
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None

    def __post_init__(self):
        if type(self.default) not in PARAM_TYPES:
            raise TypeError(f"Param default must be a bool, int, float or str, got {self.default!r}")
        if not self.help.strip():
            raise ValueError("Param needs a help text")

    @property
    def type(self) -> type:
        """The field's Python type."""
        return type(self.default)

    def metadata(self) -> dict:
        """The config field metadata (same keys as ``backend.config.spec``)."""
        return {"help": self.help, "choices": self.choices, "ge": self.ge, "gt": self.gt,
                "le": self.le, "lt": self.lt}


@dataclass(frozen=True)
class MethodSpec:
    """A method's declaration. ``params``: field name -> Param of the ``[method]`` section;
    ``backbones``: the backbone families it trains; ``reads``: fields of other sections that only
    some methods use (e.g. ``model.predictor_hidden_dim``), shown in the editor only for those;
    ``help``: what it learns, in a sentence or two; ``paper``: where it comes from, as
    "Authors year, Title" (the GUI's method card shows both)."""

    name: str
    label: str
    family: str
    params: dict = field(default_factory=dict)
    backbones: tuple = BACKBONE_FAMILIES
    uses_labels: bool = False
    reads: tuple = ()
    help: str = ""
    paper: str = ""

    def __post_init__(self):
        if not self.name.isidentifier():
            raise ValueError(f"method name must be an identifier, got {self.name!r}")
        if self.family not in FAMILIES:
            raise ValueError(f"{self.name}: family must be one of {', '.join(FAMILIES)}, got {self.family!r}")
        bad = [b for b in self.backbones if b not in BACKBONE_FAMILIES]
        if bad or not self.backbones:
            raise ValueError(f"{self.name}: backbones must be some of {', '.join(BACKBONE_FAMILIES)}, "
                             f"got {self.backbones!r}")
        for key, param in self.params.items():
            if key in RESERVED_NAMES or not key.isidentifier():
                raise ValueError(f"{self.name}: {key!r} cannot be a hyperparameter name")
            if not isinstance(param, Param):
                raise TypeError(f"{self.name}: params[{key!r}] must be a Param, got {param!r}")

    def defaults(self) -> dict:
        """Field name -> default value."""
        return {key: p.default for key, p in self.params.items()}


# ---- hyperparameters several methods read (one declaration, per-method default) ---------------
def temperature(default: float = 0.5) -> Param:
    """Softmax temperature of a contrastive / swapped-prediction loss."""
    return Param(default, "Softmax temperature of the contrastive loss.", gt=0.0)


def queue_size(default: int = 4096, help: str = "Number of negatives kept in the queue.") -> Param:
    """Length of a FIFO of past embeddings (negatives, support set, SwAV queue)."""
    return Param(default, help, ge=1)


def momentum(default: float = 0.99) -> Param:
    """EMA momentum of a key/teacher/target encoder (the base value of a schedule)."""
    return Param(default, "EMA momentum of the key/teacher encoder (base value).", ge=0.0, le=1.0)


def momentum_final(default: float = 1.0) -> Param:
    """EMA momentum at the end of a cosine momentum schedule."""
    return Param(default, "EMA momentum at the end of training (cosine schedule).", ge=0.0, le=1.0)


def shuffle_bn(default: bool = True) -> Param:
    """MoCo's shuffled batch norm of the key batch."""
    return Param(default, "Guard against BN leaking information: shuffle the key batch (MoCo).")
