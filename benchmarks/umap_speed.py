"""UMAP speed: the fast default layout vs the reproducible (seeded, single-threaded) one.

``python benchmarks/umap_speed.py [--n 10000] [--dim 256] [--quick] [--paths fast reproducible]``

Features are synthetic clusters (``--clusters`` Gaussian blobs in ``--dim`` dimensions). Each path
runs in a fresh Python process: *cold* is its first projection there (imports, numba kernels
loaded from the on-disk cache or compiled, the layout), *warm* a second projection in the same
process. The table also gives the 5-NN accuracy of the cluster labels on the 2-D layout (how well
the layout keeps the clusters apart) and compares each path with the reproducible one measured in
the same run. Target for 10k x 256: fast path at most 10 s warm and 30 s cold. ``--quick``
(2000 x 64) takes well under a minute; needs the project root on PYTHONPATH.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

CHILD = r"""
import json, sys, time
import numpy as np
n, dim, clusters, reproducible = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"
from backend.inspect import project_2d
rng = np.random.default_rng(0)
centres = rng.normal(size=(clusters, dim))
labels = rng.integers(0, clusters, n)
x = (centres[labels] + 0.6 * rng.normal(size=(n, dim))).astype(np.float32)
times, layouts = [], []
for _ in range(2):
    start = time.perf_counter()
    layouts.append(project_2d(x, "umap", seed=0, reproducible=reproducible))
    times.append(time.perf_counter() - start)
from sklearn.neighbors import KNeighborsClassifier
from sklearn.model_selection import cross_val_score
acc = float(cross_val_score(KNeighborsClassifier(5), layouts[-1], labels, cv=3).mean())
print(json.dumps({"cold": times[0], "warm": times[1], "acc": acc,
                  "identical": bool(np.array_equal(layouts[0], layouts[1]))}))
"""


def run_path(n: int, dim: int, clusters: int, reproducible: bool) -> dict:
    """Cold and warm seconds (and layout quality) of one path, in a fresh process."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", CHILD, str(n), str(dim), str(clusters), "1" if reproducible else "0"],
                          capture_output=True, text=True, env=dict(os.environ))
    if proc.returncode != 0:
        raise SystemExit(f"benchmark child failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["process"] = time.perf_counter() - start
    return result


def main(argv=None) -> int:
    """Measure the chosen paths and print the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--clusters", type=int, default=10)
    ap.add_argument("--quick", action="store_true", help="2000 x 64 (under a minute)")
    ap.add_argument("--paths", nargs="+", choices=("fast", "reproducible"), default=["reproducible", "fast"])
    args = ap.parse_args(argv)
    if args.quick:
        args.n, args.dim = 2000, 64
    print(f"UMAP of {args.n} x {args.dim} synthetic features ({args.clusters} clusters), "
          f"{os.cpu_count()} CPUs")
    rows = {p: run_path(args.n, args.dim, args.clusters, p == "reproducible") for p in args.paths}
    base = rows.get("reproducible")
    print(f"{'path':<14}{'cold s':>9}{'warm s':>9}{'process s':>11}{'2-D 5-NN acc':>14}{'same twice':>12}"
          f"{'warm speed-up':>15}")
    for path, r in rows.items():
        speed = f"{base['warm'] / r['warm']:.1f}x" if base else "-"
        print(f"{path:<14}{r['cold']:>9.2f}{r['warm']:>9.2f}{r['process']:>11.2f}{r['acc']:>14.3f}"
              f"{str(r['identical']):>12}{speed:>15}")
    if "fast" in rows and args.n == 10000:
        ok = rows["fast"]["warm"] <= 10 and rows["fast"]["cold"] <= 30
        print(f"target (fast, 10k: warm <= 10 s, cold <= 30 s): {'met' if ok else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
