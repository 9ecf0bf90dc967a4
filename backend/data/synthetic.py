"""Synthetic shapes: procedurally drawn, labelled images whose class is a SHAPE or PATTERN.

Ten classes (``CLASS_NAMES``): five filled shapes, two multi-part shapes and three full-image
textures. Foreground and background colours are drawn independently of the class (uniform RGB,
kept apart enough to be visible), and position, size, rotation, stripe period, shading and noise
vary per image. Colour therefore carries no label information: a random-init CNN, whose features
are dominated by colour, does only moderately on kNN, while a method trained with colour jitter
has to pick up shape - which is the point of the data set (see the quick preset).

Everything is drawn with numpy in whole-array operations from one seeded ``Generator``: 2000
images of 32 x 32 take a few tens of milliseconds, and the same seed gives the same bytes.
"""

from __future__ import annotations

import numpy as np

from .sampling import derive_rng
from .types import Decoded, Plan

CLASS_NAMES = ["disc", "square", "triangle", "ring", "cross", "star", "two-dots",
               "horizontal-stripes", "diagonal-stripes", "checkerboard"]
TEXTURES = (7, 8, 9)          # classes that fill the whole image
_CHUNK = 2048                 # images rendered per block (bounds memory; fixed => deterministic)
_MIN_COLOUR_DISTANCE = 0.45   # RGB distance (0..sqrt 3) kept between foreground and background


def plan(cfg, ref, split: str, seed: int, limit: int, **_hooks) -> Plan:
    """The cache key and builder of split ``split`` (train and test use different derived seeds).

    A train/test limit caps the number of generated images (same class balance); ``ref`` (the
    parsed source) and the progress hooks do not matter here."""

    n = int(cfg.synthetic_train_size if split == "train" else cfg.synthetic_test_size)
    if limit > 0:
        n = min(n, limit)
    size = int(cfg.image_size)
    key = {"source": "synthetic", "split": split, "size": size, "n": n, "seed": int(seed)}

    def build():
        images, labels = generate(n, size, derive_rng(seed, "synthetic", split))
        return Decoded(images, labels, list(CLASS_NAMES))

    return Plan(key=key, label="synthetic", build=build)


def describe(ref) -> str:
    """One line about the synthetic source."""
    return (f"Synthetic shapes: {len(CLASS_NAMES)} procedurally drawn shape/pattern classes with random "
            "colours (generated, no files needed)")


def num_classes(ref, cfg=None) -> int:
    """The number of shape classes."""
    return len(CLASS_NAMES)


def generate(n: int, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``n`` images: uint8 array (n, 3, size, size) and int64 labels (n,), balanced to +-1."""
    labels = rng.permutation(np.arange(n) % len(CLASS_NAMES)).astype(np.int64)
    p = _draw_parameters(n, rng, labels)
    images = np.empty((n, 3, size, size), dtype=np.uint8)
    for start in range(0, n, _CHUNK):
        sl = slice(start, min(n, start + _CHUNK))
        images[sl] = _render({k: v[sl] for k, v in p.items()}, labels[sl], size, rng)
    return images, labels


def _draw_parameters(n: int, rng: np.random.Generator, labels: np.ndarray) -> dict:
    """Per-image geometry, colours and noise levels (drawn for every image, used where relevant)."""
    p = {
        "cx": rng.uniform(-0.3, 0.3, n), "cy": rng.uniform(-0.3, 0.3, n),
        "radius": rng.uniform(0.45, 0.75, n),          # half-extent in image units ([-1, 1] wide)
        "angle": rng.uniform(0.0, 2 * np.pi, n),
        "period": rng.uniform(0.28, 0.5, n),            # texture period in image units
        "phase": rng.uniform(0.0, 2 * np.pi, (n, 2)),
        "tilt": np.deg2rad(rng.uniform(-12.0, 12.0, n)),
        "diag_sign": rng.choice([-1.0, 1.0], n),
        "shade": rng.uniform(-0.08, 0.08, (n, 2)),      # linear brightness gradient (x, y)
        "noise": rng.uniform(0.01, 0.05, n),            # per-pixel gaussian noise std
    }
    fg, bg = rng.uniform(0, 1, (n, 3)), rng.uniform(0, 1, (n, 3))
    for _ in range(100):  # redraw pairs too close to see; vectorised over the offending images
        bad = np.linalg.norm(fg - bg, axis=1) < _MIN_COLOUR_DISTANCE
        if not bad.any():
            break
        fg[bad], bg[bad] = rng.uniform(0, 1, (bad.sum(), 3)), rng.uniform(0, 1, (bad.sum(), 3))
    p["fg"], p["bg"] = fg, bg
    return p


def _render(p: dict, labels: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Render one block of images from their parameters (float maths, uint8 out)."""
    m = len(labels)
    coords = (np.arange(size, dtype=np.float32) + 0.5) * (2.0 / size) - 1.0
    gx, gy = coords[None, None, :], coords[None, :, None]       # (1, 1, S) and (1, S, 1)
    mask = np.zeros((m, size, size), dtype=np.float32)
    pixel = 2.0 / size                                            # one pixel in image units
    for cls in range(len(CLASS_NAMES)):
        idx = np.flatnonzero(labels == cls)
        if idx.size == 0:
            continue
        q = {k: v[idx] for k, v in p.items()}
        if cls in TEXTURES:
            mask[idx] = _texture(cls, q, gx, gy, pixel)
        else:
            mask[idx] = _shape(cls, q, gx, gy, pixel)
    img = p["bg"][:, :, None, None] * (1 - mask[:, None]) + p["fg"][:, :, None, None] * mask[:, None]
    shade = p["shade"][:, 0, None, None] * gx + p["shade"][:, 1, None, None] * gy
    noise = rng.standard_normal((m, 3, size, size), dtype=np.float32) * p["noise"][:, None, None, None]
    img = img + shade[:, None] + noise
    return np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)


def _col(v):
    """Per-image scalar -> broadcastable (k, 1, 1) float32."""
    return np.asarray(v, dtype=np.float32)[:, None, None]


def _shape(cls: int, q: dict, gx, gy, pixel: float) -> np.ndarray:
    """Anti-aliased mask of a shape class from an (approximate) signed distance, inside > 0."""
    r = _col(q["radius"])
    dx, dy = gx - _col(q["cx"]), gy - _col(q["cy"])
    c, s = _col(np.cos(q["angle"])), _col(np.sin(q["angle"]))
    u, v = (c * dx + s * dy) / r, (-s * dx + c * dy) / r          # shape-local units (radius 1)
    rho = np.sqrt(u * u + v * v)
    if cls == 0:      # disc
        sdf = 1.0 - rho
    elif cls == 1:    # square
        sdf = 0.8 - np.maximum(np.abs(u), np.abs(v))
    elif cls == 2:    # equilateral triangle, circumradius 1.15
        normals = [(np.cos(a), np.sin(a)) for a in np.deg2rad([-90.0, 30.0, 150.0])]
        sdf = np.min([0.575 - (nx * u + ny * v) for nx, ny in normals], axis=0)
    elif cls == 3:    # ring
        sdf = np.minimum(rho - 0.5, 1.0 - rho)
    elif cls == 4:    # cross (plus sign; rotated it may read as an x)
        arm1 = np.minimum(0.28 - np.abs(u), 1.0 - np.abs(v))
        arm2 = np.minimum(0.28 - np.abs(v), 1.0 - np.abs(u))
        sdf = np.maximum(arm1, arm2)
    elif cls == 5:    # five-pointed star: boundary radius goes linearly from tip to notch
        sector = 2 * np.pi / 5
        t = np.mod(np.arctan2(v, u), sector) / sector
        boundary = 0.42 + (1.1 - 0.42) * np.abs(2 * t - 1)
        sdf = 0.6 * (boundary - rho)
    elif cls == 6:    # two dots
        d1 = np.sqrt((u - 0.55) ** 2 + v * v)
        d2 = np.sqrt((u + 0.55) ** 2 + v * v)
        sdf = 0.4 - np.minimum(d1, d2)
    else:  # pragma: no cover - guarded by the caller
        raise ValueError(f"class {cls} is not a shape")
    return np.clip(sdf * r / pixel + 0.5, 0.0, 1.0)


def _texture(cls: int, q: dict, gx, gy, pixel: float) -> np.ndarray:
    """Anti-aliased full-image pattern: stripes (horizontal / diagonal) or a checkerboard."""
    tilt = q["tilt"]
    if cls == 8:
        tilt = tilt + q["diag_sign"] * (np.pi / 4)
    c, s = _col(np.cos(tilt)), _col(np.sin(tilt))
    u, v = c * gx + s * gy, -s * gx + c * gy
    period = _col(q["period"]) * (1.4 if cls == 9 else 1.0)   # checker cells >= ~3 px at 32 px
    k = 2 * np.pi / period
    ph = q["phase"].astype(np.float32)
    ramp = 1.0 / (k * pixel)            # sin slope per pixel is k*pixel; make edges ~1 px wide
    if cls in (7, 8):
        wave = np.sin(k * v + _col(ph[:, 0]))
    else:
        wave = np.sin(k * u + _col(ph[:, 0])) * np.sin(k * v + _col(ph[:, 1])) * 2.0
    return np.clip(0.5 + wave * ramp, 0.0, 1.0)
