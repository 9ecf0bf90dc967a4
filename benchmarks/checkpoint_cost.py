"""Cost of the metrics part of a checkpoint (events.jsonl fsync + metrics.h5 update) as a run grows.

A checkpoint syncs events.jsonl and brings metrics.h5 up to date. The old way rebuilt metrics.h5
from the whole events file every time (``backend.runs.write_metrics_h5``), so a checkpoint after
10^6 events cost about 1000x one after 10^3; the trainer now appends only what is new
(``backend.runs.MetricsH5Writer``). For each run length N the script writes N metric events
(20 series, like a real run), primes the writer once (its one rebuild per trainer start), then
times K checkpoints, each after a further ``--interval`` events: new = sync + append, old = sync
+ full rebuild, in the same run on the same files. Prints a table (median ms per checkpoint).

    python benchmarks/checkpoint_cost.py              # N = 10^3 and 10^6 (about 40 s here)
    python benchmarks/checkpoint_cost.py --quick      # N = 10^3 and 10^5
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backend.events import EventWriter  # noqa: E402
from backend.runs import EVENTS_FILE, MetricsH5Writer, read_metrics_h5, write_metrics_h5  # noqa: E402

NAMES = ["loss", "lr", "throughput", "alignment", "uniformity", "embedding_std", "effective_rank",
         "backbone_alignment", "backbone_uniformity", "backbone_embedding_std", "backbone_effective_rank",
         "simclr/momentum", "a", "b", "c", "d", "e", "f", "g", "h"]


def write_base(path: Path, n: int) -> int:
    """n metric events (20 names per step) as the events file of a run; returns the last step."""
    steps = max(1, n // len(NAMES))
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(json.dumps({"kind": "status", "time": 0.0, "state": "running", "message": ""}) + "\n")
        lines = []
        for step in range(1, steps + 1):
            for name in NAMES:
                lines.append(f'{{"kind": "metric", "time": {step * 0.01:.3f}, "name": "{name}", '
                             f'"value": {1.0 / step:.6g}, "step": {step}, "epoch": {step // 400}}}')
            if len(lines) > 100_000:
                fh.write("\n".join(lines) + "\n")
                lines = []
        if lines:
            fh.write("\n".join(lines) + "\n")
    return steps


def measure(n: int, interval: int, repeats: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp)
        step = write_base(run / EVENTS_FILE, n)
        events = EventWriter(run / EVENTS_FILE, echo=False)
        writer = MetricsH5Writer(run)
        t0 = time.perf_counter()
        writer.update()                      # once per trainer start: the rebuild (resume cut)
        prime = time.perf_counter() - t0
        new, old, appends = [], [], []
        for _ in range(repeats):
            for _ in range(max(1, interval // len(NAMES))):
                step += 1
                for name in NAMES:
                    events.metric(name, 1.0 / step, step, step // 400)
            t0 = time.perf_counter()
            events.sync()
            t1 = time.perf_counter()
            writer.update()
            new.append(time.perf_counter() - t0)
            appends.append(time.perf_counter() - t1)
            t0 = time.perf_counter()
            events.sync()
            write_metrics_h5(run)            # the old checkpoint: rebuild from the whole file
            old.append(time.perf_counter() - t0)
        events.close()
        h5 = read_metrics_h5(run / "metrics.h5")
        assert h5["loss"]["step"].tolist() == list(range(1, step + 1)), "metrics.h5 lost or repeated points"
    return {"n": n, "prime": prime, "new": statistics.median(new), "old": statistics.median(old),
            "append": statistics.median(appends)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 1_000_000],
                        help="run lengths in metric events (default 10^3 and 10^6)")
    parser.add_argument("--interval", type=int, default=1000, help="events between two checkpoints")
    parser.add_argument("--repeats", type=int, default=5, help="checkpoints timed per size (median)")
    parser.add_argument("--quick", action="store_true", help="sizes 10^3 and 10^5")
    args = parser.parse_args(argv)
    sizes = [1_000, 100_000] if args.quick else args.sizes
    rows = [measure(n, args.interval, args.repeats) for n in sizes]
    print(f"checkpoint = events fsync + metrics.h5 update, {args.interval} new events per checkpoint, "
          f"median of {args.repeats}")
    print(f"{'events in run':>14} {'new (ms)':>9} {'of it h5 append':>16} {'old, rebuild (ms)':>18} "
          f"{'old/new':>8} {'first update at start (ms)':>27}")
    for r in rows:
        print(f"{r['n']:>14,} {1000 * r['new']:>9.2f} {1000 * r['append']:>16.2f} {1000 * r['old']:>18.1f} "
              f"{r['old'] / r['new']:>8.0f} {1000 * r['prime']:>27.1f}")
    first, last = rows[0], rows[-1]
    print(f"a checkpoint after {last['n']:,} events costs {last['new'] / first['new']:.2f}x the one after "
          f"{first['n']:,}; the old rebuild costs {last['old'] / first['old']:.0f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
