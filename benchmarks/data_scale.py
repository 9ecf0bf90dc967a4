"""Data larger than RAM: memory use of the memory-mapped cache + prefetcher, and parallel decoding.

(i) A synthetic uint8 cache of ``--cache-gb`` GB (64 px images; default 2.5 GB) is written to a
temp folder, then one epoch of shuffled batches is gathered three ways, each in a fresh child
process so the figures do not mix: the in-RAM path (``np.load`` the whole array, as the cache
reads today, then index it), the memory map through ``BatchPrefetcher``, and
``npy_rows.NpyRows`` through it (rows ``pread`` into the batch, no mapping). Each reports the time to open the
cache, the epoch's img/s, and the peak growth (sampled after every batch) of VmRSS, RssAnon
(private memory) and RssFile (mapped file pages: clean, reclaimable), against ``--budget-mb``.
(iii) Training: a synthetic-source cache entry of ``--train-mb`` MiB (64 px) is written straight
into a temp cache, and ``--train-steps`` steps of the tiny CNN are trained on it with
``data.memory = 'ram'`` and ``'mmap'``, each in a fresh child: peak RSS growth (VmHWM over the
process after imports), the part of it due to the data (minus the same training on a 4 MiB
cache) against ``--train-budget-mb``, and img/s of steps 2..N.
(ii) ``--decode-files`` files of an image folder (default: the CIFAR-10 copy under
../shared/data) decoded at ``--decode-size`` px by ``parallel_decode.decode_into`` with all cores
into a memory-mapped file vs one process, and the thread pool (``imagefolder.decode_files``, used below 10,000 files)
for reference (same pixels checked), img/s.

    python benchmarks/data_scale.py                 # ~1-2 minutes on 2 cores
    python benchmarks/data_scale.py --quick         # 0.4 GB, 1000 files, 512 MiB training cache
    python benchmarks/data_scale.py --cache-gb 8 --decode-files 20000 --folder /data/imagenet/train

The temp cache is removed at the end (also on errors); ``--tmp`` picks its folder.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

SIZE = 64
BATCH = 256


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def write_cache(path: Path, gb: float) -> int:
    """A (n, 3, 64, 64) uint8 .npy of about ``gb`` GB, filled with a cheap per-image pattern."""
    from backend.data.parallel_decode import open_image_memmap

    n = int(gb * 1e9) // (3 * SIZE * SIZE)
    out = open_image_memmap(path, n, SIZE)
    base = (np.arange(3 * SIZE * SIZE, dtype=np.uint32) % 251).astype(np.uint8).reshape(3, SIZE, SIZE)
    step = 8192
    for start in range(0, n, step):
        stop = min(n, start + step)
        out[start:stop] = base + (np.arange(start, stop) % 256).astype(np.uint8)[:, None, None, None]
    out.flush()
    del out
    return n


def child(mode: str, path: str) -> dict:
    """Iterate one shuffled epoch in this process; memory growth (peaks, MiB) and speed."""
    import torch

    from backend.data.npy_rows import NpyRows
    from backend.data.prefetch import BatchPrefetcher, batch_indices

    torch.set_num_threads(1)
    base = {f: _status_kb(f) for f in ("VmRSS", "RssAnon", "RssFile")}
    peak = dict.fromkeys(base, 0)
    t0 = time.perf_counter()
    if mode == "pread+prefetch":
        images = NpyRows(path)
    else:
        images = np.load(path, mmap_mode=None if mode == "in-RAM" else "r")
    opened = time.perf_counter() - t0
    n = images.shape[0]
    batches = batch_indices(n, BATCH, seed=0)
    checksum, seen = 0, 0
    if mode == "in-RAM":
        it = (torch.from_numpy(images[idx]) for idx in batches)
    else:
        it = (x for x, _ in BatchPrefetcher(images, batches, pin_memory=False))
    t1 = time.perf_counter()
    for x in it:
        checksum += int(x[:, 0, 0, 0].sum())
        seen += x.shape[0]
        for f in peak:
            peak[f] = max(peak[f], _status_kb(f))
    epoch = time.perf_counter() - t1
    return {"mode": mode, "images": seen, "open_s": opened, "epoch_s": epoch, "img_s": seen / epoch,
            **{f"{f}_mb": (peak[f] - base[f]) / 1024 for f in peak}, "checksum": checksum}


def run_child(mode: str, path: Path) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", mode, str(path)], capture_output=True,
                         text=True, check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    return json.loads(out.stdout.strip().splitlines()[-1])


def memory_table(gb: float, budget_mb: int, tmp: str | None) -> None:
    folder = Path(tempfile.mkdtemp(prefix="sslwb-bench-", dir=tmp))
    try:
        path = folder / "images.npy"
        t0 = time.perf_counter()
        n = write_cache(path, gb)
        size_mb = path.stat().st_size / 2**20
        print(f"\n(i) cache {size_mb:,.0f} MiB ({n:,} images {SIZE}x{SIZE}) written in "
              f"{time.perf_counter() - t0:.1f} s; budget {budget_mb} MiB; batches of {BATCH}, one shuffled epoch")
        rows = [run_child(mode, path) for mode in ("in-RAM", "mmap+prefetch", "pread+prefetch")]
        if len({r["checksum"] for r in rows}) != 1:
            raise SystemExit(f"paths disagree: checksums {[r['checksum'] for r in rows]}")
        print(f"{'path':<15}{'open s':>8}{'epoch s':>9}{'img/s':>10}{'peak RSS':>10}{'anon':>8}{'file':>8}"
              f"  within budget (RSS growth, MiB)")
        for r in rows:
            ok = "yes" if r["VmRSS_mb"] <= budget_mb else ("anon only" if r["RssAnon_mb"] <= budget_mb else "no")
            print(f"{r['mode']:<15}{r['open_s']:>8.1f}{r['epoch_s']:>9.1f}{r['img_s']:>10,.0f}"
                  f"{r['VmRSS_mb']:>10,.0f}{r['RssAnon_mb']:>8,.0f}{r['RssFile_mb']:>8,.0f}  {ok}")
        base = rows[0]["img_s"]
        print("epoch speed vs in-RAM: " + ", ".join(f"{r['mode']} {r['img_s'] / base:.2f}x" for r in rows[1:]))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


TRAIN_SIZE, TRAIN_BATCH = 64, 128


def write_train_cache(root: Path, mb: float, seed: int = 0) -> int:
    """A cache entry for the synthetic source's train split of about ``mb`` MiB at 64 px (pattern
    pixels, labels i % 10), written in chunks straight into the entry (never whole in RAM)."""
    from backend.data import cache
    from backend.data.parallel_decode import open_image_memmap

    n = int(mb * 2**20) // (3 * TRAIN_SIZE * TRAIN_SIZE)
    key = {"source": "synthetic", "split": "train", "size": TRAIN_SIZE, "n": n, "seed": seed}
    name = cache.entry_name("synthetic", "train", TRAIN_SIZE, key)
    tmp = cache.begin_entry(root, name)
    out = open_image_memmap(tmp / "images.npy", n, TRAIN_SIZE)
    rng = np.random.default_rng(0)
    block = rng.integers(0, 256, (4096, 3, TRAIN_SIZE, TRAIN_SIZE), dtype=np.uint8)
    for start in range(0, n, 4096):
        stop = min(n, start + 4096)
        out[start:stop] = block[:stop - start]
    out.flush()
    del out
    cache.commit_entry(root, name, tmp, key, (np.arange(n) % 10).astype(np.int64),
                       {"class_names": [f"c{i}" for i in range(10)], "skipped": []}, n)
    return n


def train_child(memory: str, cache_root: str, n: int, steps: int) -> dict:
    """Train ``steps`` steps of a tiny CNN on the cache with data.memory = ``memory`` in this
    process; peak RSS growth over the process after imports, and img/s of steps 2..N."""
    import tempfile as _tempfile

    import torch

    from backend.config import ExperimentConfig, deep_merge, preset_dict
    from backend.control import TrainerControl
    from backend.runs import create_run
    from backend.train import run_training

    torch.set_num_threads(1)

    class Timed(TrainerControl):
        def __init__(self):
            super().__init__(read_stdin=False)
            self.times = []

        def wait_while_paused(self, on_pause=None, on_resume=None, on_checkpoint=None):
            self.times.append(time.perf_counter())

    cfg = ExperimentConfig.from_dict(deep_merge(preset_dict("quick"), {
        "data": {"synthetic_train_size": n, "synthetic_test_size": 64, "image_size": TRAIN_SIZE,
                 "cache_dir": cache_root, "memory": memory},
        "optim": {"batch_size": TRAIN_BATCH}, "schedule": {"epochs": 1000, "max_steps": steps, "warmup_epochs": 0},
        "eval": {"probe_batch_size": 16, "knn_every_epochs": 0, "knn_train_limit": 256, "metrics_every_steps": 1000},
        "runtime": {"checkpoint_every_epochs": 1000}}))
    run = create_run(Path(_tempfile.mkdtemp(prefix="sslwb-bench-run-")), cfg)
    base = _status_kb("VmRSS")
    control = Timed()
    code = run_training(run, control=control, echo=False)
    if code != 0:
        raise SystemExit(f"training failed ({code}): {(run / 'events.jsonl').read_text()[-1500:]}")
    shutil.rmtree(run.parent, ignore_errors=True)
    t = control.times
    return {"memory": memory, "peak_mb": (_status_kb("VmHWM") - base) / 1024,
            "img_s": (len(t) - 2) * TRAIN_BATCH / (t[-1] - t[1]) if len(t) > 2 else float("nan")}


def train_table(cache_mb: float, budget_mb: int, steps: int, tmp: str | None) -> None:
    folder = Path(tempfile.mkdtemp(prefix="sslwb-bench-train-", dir=tmp))
    try:
        t0 = time.perf_counter()
        n = write_train_cache(folder, cache_mb)
        print(f"\n(iii) training {steps} steps (tiny CNN, batch {TRAIN_BATCH}, {TRAIN_SIZE} px) on a "
              f"{cache_mb:,.0f} MiB cache ({n:,} images, written in {time.perf_counter() - t0:.1f} s); "
              f"budget {budget_mb} MiB")
        tiny = write_train_cache(folder / "tiny", 4)        # same model and steps, 4 MiB of data

        def train(memory, root, count):
            out = subprocess.run([sys.executable, __file__, "--train-child", memory, str(root), str(count), str(steps)],
                                 capture_output=True, text=True, check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
            return json.loads(out.stdout.strip().splitlines()[-1])

        base = train("ram", folder / "tiny", tiny)["peak_mb"]
        rows = [train(memory, folder, n) for memory in ("ram", "mmap")]
        print(f"training itself (model, optimiser, activations; 4 MiB cache): {base:,.0f} MiB peak RSS growth")
        print(f"{'data.memory':<13}{'peak RSS growth':>16}{'of it data':>12}{'img/s':>9}  data within budget")
        for r in rows:
            data = r["peak_mb"] - base
            print(f"{r['memory']:<13}{r['peak_mb']:>16,.0f}{data:>12,.0f}{r['img_s']:>9,.0f}  "
                  f"{'yes' if data <= budget_mb else 'no'}")
        print(f"mmap vs ram: {rows[1]['img_s'] / rows[0]['img_s']:.2f}x img/s, "
              f"{rows[1]['peak_mb'] - rows[0]['peak_mb']:+,.0f} MiB peak RSS")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _default_folder() -> Path | None:
    for cand in (ROOT.parent / "shared/data/cifar10", ROOT.parent.parent / "shared/data/cifar10"):
        if cand.is_dir():
            return cand
    return None


def decode_table(folder: Path | None, count: int, size: int, tmp: str | None) -> None:
    from backend.data.folder_tree import IMAGE_EXTENSIONS
    from backend.data.imagefolder import decode_files, usable_cpus
    from backend.data.parallel_decode import decode_into, open_image_memmap

    if folder is None or not folder.is_dir():
        print("\n(ii) skipped: no image folder (give --folder)")
        return
    paths = sorted(str(p) for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)[:count]
    print(f"\n(ii) decoding {len(paths):,} files of {folder} at {size} px")
    results = {}
    work = Path(tempfile.mkdtemp(prefix="sslwb-bench-decode-", dir=tmp))
    try:
        runs = (("1 process", 1), (f"{usable_cpus()} processes", None), ("threads", "threads"))
        for label, workers in runs:
            t0 = time.perf_counter()
            if workers == "threads":
                out, errors = decode_files(paths, size)
            else:
                out = open_image_memmap(work / f"{len(results)}.npy", len(paths), size)
                errors = decode_into(paths, out, size, workers=workers)
            results[label] = (len(paths) / (time.perf_counter() - t0), np.array(out),
                              sum(e is not None for e in errors))
            del out
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rates = [r[0] for r in results.values()]
    same = all(np.array_equal(r[1], results["1 process"][1]) for r in results.values())
    print(f"{'decoder':<18}{'img/s':>10}{'vs 1 process':>14}")
    for label, (rate, _, _) in results.items():
        print(f"{label:<18}{rate:>10,.0f}{rate / rates[0]:>13.2f}x")
    print(f"identical pixels: {same}; failed files: {results['1 process'][2]}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cache-gb", type=float, default=2.5)
    parser.add_argument("--budget-mb", type=int, default=512)
    parser.add_argument("--decode-files", type=int, default=4000)
    parser.add_argument("--decode-size", type=int, default=32)
    parser.add_argument("--folder", type=Path, default=None)
    parser.add_argument("--tmp", default=None, help="folder for the temp cache (default: the system temp)")
    parser.add_argument("--quick", action="store_true", help="0.4 GB cache, 1000 files, 512 MiB training cache")
    parser.add_argument("--train-mb", type=float, default=1024, help="cache size of the training table (iii)")
    parser.add_argument("--train-budget-mb", type=int, default=256)
    parser.add_argument("--train-steps", type=int, default=8)
    parser.add_argument("--only", choices=("gather", "decode", "train"), default=None, help="one table only")
    parser.add_argument("--child", nargs=2, metavar=("MODE", "PATH"), help=argparse.SUPPRESS)
    parser.add_argument("--train-child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(*args.child)))
        return 0
    if args.train_child:
        memory, root, n, steps = args.train_child
        print(json.dumps(train_child(memory, root, int(n), int(steps))))
        return 0
    if args.quick:
        args.cache_gb, args.decode_files, args.train_mb, args.train_steps = 0.4, 1000, 512, 5
    if args.only in (None, "gather"):
        memory_table(args.cache_gb, args.budget_mb, args.tmp)
    if args.only in (None, "decode"):
        decode_table(args.folder or _default_folder(), args.decode_files, args.decode_size, args.tmp)
    if args.only in (None, "train"):
        train_table(args.train_mb, args.train_budget_mb, args.train_steps, args.tmp)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
