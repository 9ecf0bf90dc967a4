"""The ``[augment]`` section: the shared view pipeline and optional per-view overrides.

``[augment]`` holds the shared (default) pipeline every view uses. ``[augment.view1]``,
``[augment.view2]`` and ``[augment.local]`` hold only the fields in which the first global view,
the second global view or the local (multi-crop) views differ; a field left unset (None) takes the
shared value. A config without these tables means exactly what it meant before they existed.
Asymmetric recipes (BYOL: blur 1.0 / 0.1, solarise 0 / 0.2) set the two global views' fields.
Global views beyond the second use the shared pipeline. Torch-free, like every config module.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from .config_fields import get_path, spec

__all__ = ["AugmentConfig", "ViewAugmentConfig", "VIEW_KEYS", "VIEW_TABLES", "augment_errors", "resolved_view"]

# Fields a view may override (crop scale of the local views: ``local_crop_scale`` in the shared table).
VIEW_KEYS = ("crop_scale", "crop_ratio", "hflip_prob", "jitter_prob", "brightness", "contrast", "saturation",
             "hue", "grayscale_prob", "blur_prob", "blur_sigma", "solarize_prob", "solarize_threshold")
VIEW_TABLES = ("view1", "view2", "local")
_UNSET = " Unset = the shared [augment] value."


@dataclass
class ViewAugmentConfig:
    """Overrides of one view's pipeline; every field None (unset) means the shared value."""

    crop_scale: list | None = spec(None, "Random resized crop: [min, max] area fraction." + _UNSET)
    crop_ratio: list | None = spec(None, "Random resized crop: [min, max] aspect ratio." + _UNSET)
    hflip_prob: float | None = spec(None, "Probability of a horizontal flip." + _UNSET, ge=0.0, le=1.0)
    jitter_prob: float | None = spec(None, "Probability of colour jitter." + _UNSET, ge=0.0, le=1.0)
    brightness: float | None = spec(None, "Colour jitter: brightness strength." + _UNSET, ge=0.0)
    contrast: float | None = spec(None, "Colour jitter: contrast strength." + _UNSET, ge=0.0)
    saturation: float | None = spec(None, "Colour jitter: saturation strength." + _UNSET, ge=0.0)
    hue: float | None = spec(None, "Colour jitter: hue strength." + _UNSET, ge=0.0, le=0.5)
    grayscale_prob: float | None = spec(None, "Probability of converting to grayscale." + _UNSET, ge=0.0, le=1.0)
    blur_prob: float | None = spec(None, "Probability of gaussian blur." + _UNSET, ge=0.0, le=1.0)
    blur_sigma: list | None = spec(None, "Gaussian blur: [min, max] sigma in pixels." + _UNSET)
    solarize_prob: float | None = spec(None, "Probability of solarisation." + _UNSET, ge=0.0, le=1.0)
    solarize_threshold: float | None = spec(None, "Solarisation threshold (fraction of full scale)." + _UNSET,
                                            ge=0.0, le=1.0)

    def overrides(self) -> dict:
        """The fields that are set, as {name: value}."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}


@dataclass
class AugmentConfig:
    crop_scale: list = spec([0.08, 1.0], "Random resized crop: [min, max] area fraction.", factory=True)
    crop_ratio: list = spec([0.75, 1.3333333], "Random resized crop: [min, max] aspect ratio.", factory=True)
    hflip_prob: float = spec(0.5, "Probability of a horizontal flip.", ge=0.0, le=1.0)
    jitter_prob: float = spec(0.8, "Probability of colour jitter.", ge=0.0, le=1.0)
    brightness: float = spec(0.4, "Colour jitter: brightness strength.", ge=0.0)
    contrast: float = spec(0.4, "Colour jitter: contrast strength.", ge=0.0)
    saturation: float = spec(0.4, "Colour jitter: saturation strength.", ge=0.0)
    hue: float = spec(0.1, "Colour jitter: hue strength.", ge=0.0, le=0.5)
    grayscale_prob: float = spec(0.2, "Probability of converting to grayscale.", ge=0.0, le=1.0)
    blur_prob: float = spec(0.0, "Probability of gaussian blur.", ge=0.0, le=1.0)
    blur_sigma: list = spec([0.1, 2.0], "Gaussian blur: [min, max] sigma in pixels.", factory=True)
    solarize_prob: float = spec(0.0, "Probability of solarisation.", ge=0.0, le=1.0)
    solarize_threshold: float = spec(0.5, "Solarisation threshold (fraction of full scale).", ge=0.0, le=1.0)
    num_global_crops: int = spec(2, "Number of global views per image.", ge=1, le=8)
    num_local_crops: int = spec(0, "Number of small local views per image (multi-crop).", ge=0, le=16)
    local_crop_size: int = spec(16, "Side length of local views (pixels).", ge=4)
    local_crop_scale: list = spec([0.05, 0.4], "Local crops: [min, max] area fraction.", factory=True)
    mean: list = spec([0.4914, 0.4822, 0.4465], "Per-channel normalisation mean.", factory=True)
    std: list = spec([0.2470, 0.2435, 0.2616], "Per-channel normalisation std.", factory=True)
    view1: ViewAugmentConfig = spec(ViewAugmentConfig(), "First global view: fields that differ from the "
                                    "shared pipeline.", factory=True)
    view2: ViewAugmentConfig = spec(ViewAugmentConfig(), "Second global view: fields that differ from the "
                                    "shared pipeline.", factory=True)
    local: ViewAugmentConfig = spec(ViewAugmentConfig(), "Local (multi-crop) views: fields that differ from "
                                    "the shared pipeline (crop_scale here replaces local_crop_scale).", factory=True)


def resolved_view(aug: AugmentConfig, which: str) -> dict:
    """The full parameter set (every VIEW_KEYS field) of view ``which``: 'shared', 'view1', 'view2' or
    'local' -- the shared values with that view's overrides applied."""
    if which not in ("shared",) + VIEW_TABLES:
        raise ValueError(f"view must be one of shared, {', '.join(VIEW_TABLES)}, got {which!r}")
    out = {key: getattr(aug, key) for key in VIEW_KEYS}
    if which == "local":
        out["crop_scale"] = aug.local_crop_scale
    if which != "shared":
        out.update(getattr(aug, which).overrides())
    return out


def view_table_for(aug: AugmentConfig, index: int) -> str:
    """Which pipeline view number ``index`` (0-based, globals first) uses."""
    if index >= aug.num_global_crops:
        return "local"
    return ("view1", "view2")[index] if index < 2 else "shared"


def augment_errors(aug: AugmentConfig, image_size: int) -> list[str]:
    """The [min, max] / range sentences of the augment section (shared and per-view tables)."""
    errors: list[str] = []
    pairs = [f"augment.{k}" for k in ("crop_scale", "crop_ratio", "blur_sigma", "local_crop_scale")]
    pairs += [f"augment.{t}.{k}" for t in VIEW_TABLES for k in ("crop_scale", "crop_ratio", "blur_sigma")]
    root = type("Root", (), {"augment": aug})
    for path in pairs:
        value = get_path(root, path)
        if value is None:
            continue
        if len(value) != 2 or value[0] > value[1]:
            errors.append(f"{path} must be [min, max] with min <= max, got {value!r}")
        elif path.endswith("crop_scale") and not (0 < value[0] and value[1] <= 1):
            errors.append(f"{path} must lie in (0, 1], got {value!r}")
    for path in ("augment.mean", "augment.std"):
        if len(get_path(root, path)) != 3:
            errors.append(f"{path} must have 3 values (R, G, B), got {get_path(root, path)!r}")
    if any(s <= 0 for s in aug.std):
        errors.append(f"augment.std must be > 0 per channel, got {aug.std!r}")
    if aug.local_crop_size > image_size:
        errors.append(f"augment.local_crop_size must be <= data.image_size ({image_size}), "
                      f"got {aug.local_crop_size}")
    return errors
