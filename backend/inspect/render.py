"""PNG pictures for ``sslwb inspect --out`` (only when matplotlib is installed; it is optional)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def matplotlib_missing() -> str | None:
    """None when matplotlib imports, else the reason (with the fix)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return "matplotlib is not installed (pip install matplotlib)"
    return None


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def save_scatter(path, xy: np.ndarray, colours: np.ndarray | None, names: list[str], title: str) -> Path:
    """A 2-D scatter coloured by class (or cluster) id."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 6), dpi=120)
    c = colours if colours is not None else None
    sc = ax.scatter(xy[:, 0], xy[:, 1], c=c, s=6, cmap="tab10" if (c is not None and c.max() < 10) else "tab20")
    if c is not None and names:
        handles, _ = sc.legend_elements(num=None)
        ax.legend(handles, names[: len(handles)], fontsize=6, markerscale=0.7, loc="best")
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def save_attention(path, image01: np.ndarray, per_head: np.ndarray, title: str) -> Path:
    """The image, then each head's map overlaid on it, in one row."""
    plt = _pyplot()
    heads = per_head.shape[0]
    fig, axes = plt.subplots(1, heads + 1, figsize=(2.2 * (heads + 1), 2.4), dpi=120)
    img = np.transpose(image01, (1, 2, 0))
    axes[0].imshow(img)
    axes[0].set_title("image", fontsize=8)
    for h in range(heads):
        axes[h + 1].imshow(img)
        axes[h + 1].imshow(per_head[h], cmap="inferno", alpha=0.6)
        axes[h + 1].set_title(f"head {h}" if heads > 1 else "map", fontsize=8)
    for ax in axes:
        ax.axis("off")
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)
