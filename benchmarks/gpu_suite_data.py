"""The GPU suite's data: a compact uint8 ``.npy`` copy of CIFAR-10 that fits the device's carry limit,
and how the suite turns ``--data`` into a ``data.source`` the trainer reads.

No engine source reads a cache entry by itself: an entry of ``backend.data.cache`` is keyed on its
source (an image folder's path and the names, sizes and modification times of its files), so it
is found only next to the folder it was decoded from. The suite therefore carries its own
compact copy, made here by the engine's own loader (``load_dataset``, which decodes and picks a
class-balanced ``train_limit``/``test_limit`` subset exactly as a run would):

    <dir>/meta.json                       {"format": 1, "class_names": [...], "source": ..., "counts": {...}}
    <dir>/train/images.npy                uint8 (N, 3, S, S)
    <dir>/train/labels.npy                int64 (N,)
    <dir>/test/images.npy, labels.npy

50,000 x 32 x 32 x 3 bytes are 154 MB, over the 64 MiB that travels to the device; 10,000 train +
2,000 test images are 36.9 MB. Build it here (about 10 s from the decoded cache):

    python benchmarks/gpu_suite_data.py --out .gpu_data/cifar10-12k --train 10000 --test 2000

On the device ``--data .gpu_data/cifar10-12k`` is written back, losslessly, as a PNG image folder
in a temporary directory (about 2 s for 12k images), which the trainer then reads through its
ordinary ``imagefolder:`` source (decoded once into its own cache): the run under test is the
run a user gets. ``--data`` may also name an image folder (``train/`` + ``test/`` or class folders).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FORMAT = 1
# ../shared/data/cifar10 beside the checkout (a worktree one level deeper finds it one folder up)
CIFAR = next((p for p in (ROOT.parent / "shared" / "data" / "cifar10", ROOT.parents[1] / "shared" / "data" / "cifar10")
              if p.is_dir()), ROOT.parent / "shared" / "data" / "cifar10")


def is_npy_cache(path) -> bool:
    """Whether ``path`` is a folder in this module's compact format."""
    path = Path(path)
    return (path / "meta.json").is_file() and (path / "train" / "images.npy").is_file()


def build_cache(source: str, out, train: int, test: int, image_size: int = 32) -> dict:
    """Decode ``source`` with the engine's loader (class-balanced ``train``/``test`` subsets, 0 =
    all) and write the compact folder ``out``; returns its meta."""
    from backend.config import DataConfig
    from backend.data.sources import load_dataset

    cfg = DataConfig(source=source, image_size=image_size, train_limit=train, test_limit=test)
    out = Path(out)
    counts, class_names = {}, None
    for split in ("train", "test"):
        data = load_dataset(cfg, split)
        if not data.labelled:
            raise SystemExit(f"{source} has no labels: the suite's kNN needs a labelled data set")
        (out / split).mkdir(parents=True, exist_ok=True)
        np.save(out / split / "images.npy", data.images.numpy(), allow_pickle=False)
        np.save(out / split / "labels.npy", data.labels.numpy().astype(np.int64), allow_pickle=False)
        counts[split], class_names = len(data), data.class_names
    meta = {"format": FORMAT, "class_names": class_names, "source": source, "image_size": image_size,
            "counts": counts}
    (out / "meta.json").write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    return meta


def read_split(folder, split: str, meta: dict) -> tuple[np.ndarray, np.ndarray]:
    """(images, labels) of one split of a compact folder, checked (no pickle)."""
    base = Path(folder) / split
    images = np.load(base / "images.npy", allow_pickle=False)
    labels = np.load(base / "labels.npy", allow_pickle=False)
    n, size = len(images), int(meta["image_size"])
    if images.dtype != np.uint8 or images.shape != (n, 3, size, size):
        raise ValueError(f"{base / 'images.npy'} holds {images.dtype} {images.shape}, not uint8 (N, 3, {size}, {size})")
    if labels.dtype != np.int64 or labels.shape != (n,) or (n and not 0 <= labels.min() <= labels.max()
                                                               < len(meta["class_names"])):
        raise ValueError(f"{base / 'labels.npy'} does not hold {n} int64 labels below {len(meta['class_names'])}")
    return images, labels


def materialise(folder, dest) -> Path:
    """Write the compact folder back as ``dest/{train,test}/<class>/<i>.png`` (lossless); returns dest."""
    from PIL import Image

    folder, dest = Path(folder), Path(dest)
    meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
    if meta.get("format") != FORMAT:
        raise ValueError(f"{folder / 'meta.json'} has format {meta.get('format')!r}, expected {FORMAT}")
    for split in ("train", "test"):
        images, labels = read_split(folder, split, meta)
        for name in meta["class_names"]:
            (dest / split / name).mkdir(parents=True, exist_ok=True)
        for i, (img, label) in enumerate(zip(images, labels)):
            Image.fromarray(np.ascontiguousarray(img.transpose(1, 2, 0))).save(
                dest / split / meta["class_names"][label] / f"{i:06d}.png", compress_level=1)
    return dest


def resolve_source(data, workdir) -> tuple[str, str]:
    """(data.source, a note) for ``--data``: a compact folder (materialised under ``workdir``) or
    an image folder; raises FileNotFoundError naming the path and the fix."""
    path = Path(data).expanduser()
    if is_npy_cache(path):
        dest = materialise(path, Path(workdir) / "cifar-from-npy")
        return f"imagefolder:{dest}", f"compact .npy cache {path} written back as PNGs in {dest}"
    if path.is_dir():
        return f"imagefolder:{path.resolve()}", f"image folder {path.resolve()}"
    raise FileNotFoundError(f"--data {path} is neither an image folder nor a compact .npy cache; make one "
                            f"with: python benchmarks/gpu_suite_data.py --out .gpu_data/cifar10-12k")


def main(argv=None) -> None:
    """Build the compact cache from the command line."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", default=f"imagefolder:{CIFAR}")
    ap.add_argument("--out", default=str(ROOT / ".gpu_data" / "cifar10-12k"))
    ap.add_argument("--train", type=int, default=10000, help="training images (class-balanced; 0 = all)")
    ap.add_argument("--test", type=int, default=2000, help="held-out images for kNN (0 = all)")
    args = ap.parse_args(argv)
    meta = build_cache(args.source, args.out, args.train, args.test)
    size = sum(f.stat().st_size for f in Path(args.out).rglob("*") if f.is_file())
    print(f"wrote {args.out}: {meta['counts']} images, {size / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
