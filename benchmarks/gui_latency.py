"""GUI latency under a live event stream: does the dashboard keep the event loop responsive?

Feeds ``RunDashboard`` synthetic trainer events (a realistic mix of names) at ``--rate`` events/s
from a QTimer on the GUI thread, in chunks as a QProcess pipe would deliver them, while a 1 ms
heartbeat timer measures event-loop stalls (stall = gap between heartbeats - interval). The same
stream then drives a naive baseline (Python lists, ``setData`` on every event, no downsampling or
clipping) and the table compares both.

    python benchmarks/gui_latency.py                      # 500 events/s for 10 s
    python benchmarks/gui_latency.py --rate 1000 --seconds 60
    python benchmarks/gui_latency.py --screenshot docs/screenshots/dashboard_synthetic.png
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import pyqtgraph as pg  # noqa: E402
from PySide6.QtCore import QElapsedTimer, Qt, QTimer  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from workbench.dashboard import REFRESH_HZ, RunDashboard  # noqa: E402

MAX_CHUNK_EVENTS = 500
PROBE = ("alignment", "uniformity", "embedding_std", "effective_rank", "backbone_alignment",
         "backbone_uniformity", "backbone_embedding_std", "backbone_effective_rank")


def synthetic_events(epochs: int = 1000, steps_per_epoch: int = 200, probe_every: int = 20,
                     dim: int = 128, seed: int = 0, t0: float | None = None, step_seconds: float = 0.01):
    """Yield a plausible run's events: status, per-step loss/lr/queue fill, throughput every 10
    steps, probe metrics every ``probe_every`` steps, epoch_time and kNN per epoch, a few logs."""
    rng = np.random.default_rng(seed)
    t = time.time() if t0 is None else t0
    total = epochs * steps_per_epoch
    yield {"kind": "status", "time": t, "state": "started", "message": "moco / resnet18 on synthetic"}
    yield {"kind": "log", "time": t, "level": "info", "message": "data ready in 0.4s: 2000 training images"}
    yield {"kind": "status", "time": t, "state": "running", "message": f"{total} steps",
           "total_steps": total, "steps_per_epoch": steps_per_epoch, "epochs": epochs}
    warm = 2 * steps_per_epoch
    for step in range(1, total + 1):
        t += step_seconds
        epoch = (step - 1) // steps_per_epoch
        p = step / total
        lr = 0.06 * min(1.0, step / warm) * 0.5 * (1 + math.cos(math.pi * p))
        loss = 4.2 * math.exp(-5 * p) + 1.3 + 0.12 * rng.standard_normal()
        common = {"kind": "metric", "time": t, "step": step, "epoch": epoch}
        yield {**common, "name": "loss", "value": loss}
        yield {**common, "name": "lr", "value": lr}
        yield {**common, "name": "moco/queue_fill", "value": min(1.0, step * 256 / 4096)}
        if step % 10 == 0:
            yield {**common, "name": "throughput", "value": 2400 + 150 * rng.standard_normal()}
        if step % probe_every == 0 or step == 1:
            q = 1 - math.exp(-4 * p)
            values = (1.3 - 0.7 * q, -0.6 - 2.9 * q, (0.35 + 0.6 * q) / math.sqrt(dim), 8 + 70 * q,
                      1.1 - 0.5 * q, -0.9 - 2.4 * q, (0.3 + 0.5 * q) / math.sqrt(512), 20 + 160 * q)
            for name, value in zip(PROBE, values):
                yield {**common, "name": name, "value": value * (1 + 0.02 * rng.standard_normal())}
        if step % steps_per_epoch == 0:
            seconds = steps_per_epoch * step_seconds * (1 + 0.05 * rng.random())
            yield {**common, "name": "epoch_time", "value": seconds}
            knn = 0.1 + 0.62 * (1 - math.exp(-3.5 * (epoch + 1) / epochs)) + 0.01 * rng.standard_normal()
            yield {**common, "name": "knn_top1", "value": knn}
            yield {"kind": "status", "time": t, "state": "checkpoint", "step": step, "epoch": epoch,
                   "message": f"checkpoint saved (epoch {epoch + 1})"}
        if step == total // 3:
            yield {"kind": "log", "time": t, "level": "warning",
                   "message": f"non-finite loss at step {step}: update skipped"}


class NaiveDashboard(pg.GraphicsLayoutWidget):
    """The baseline: one plot per metric, Python lists, ``setData`` on every event, no downsampling."""

    def __init__(self):
        super().__init__()
        self.curves: dict = {}
        self.data: dict = {}
        self.redraw_ms: list = []

    def add_events(self, events) -> None:
        """Append and redraw at once, event by event."""
        for e in events:
            if e.get("kind") != "metric":
                continue
            name = e["name"]
            if name not in self.curves:
                n = len(self.curves)
                plot = self.addPlot(row=n // 4, col=n % 4, title=name)
                self.curves[name] = plot.plot(pen="y")
                self.data[name] = ([], [])
            xs, ys = self.data[name]
            xs.append(e["step"])
            ys.append(e["value"])
            start = time.perf_counter()
            self.curves[name].setData(xs, ys)
            self.redraw_ms.append(1000 * (time.perf_counter() - start))


def measure(app: QApplication, widget, rate: float, seconds: float, chunk_ms: int, max_wall: float) -> dict:
    """Feed ``rate`` events/s for ``seconds`` to ``widget.add_events`` and record heartbeat stalls."""
    widget.resize(1400, 900)
    widget.show()
    settle = time.perf_counter() + 0.5  # the window is up before the run starts: first layout and paint
    while time.perf_counter() < settle:
        app.processEvents()
    stream = synthetic_events(epochs=10_000, steps_per_epoch=100)
    total = int(rate * seconds)
    sent, gaps, stamps = 0, [], []
    clock = QElapsedTimer()
    heartbeat_interval = 1
    last = [0.0]

    def beat():
        now = time.perf_counter()
        gaps.append(now - last[0])
        stamps.append(now)
        last[0] = now

    def feed():
        nonlocal sent
        # A pipe hands over at most its buffer (64 KiB, about 500 events) per read: a reader that
        # fell behind catches up chunk by chunk, and its lag shows in the wall time.
        due = min(total, int(rate * clock.elapsed() / 1000.0), sent + MAX_CHUNK_EVENTS) - sent
        if due > 0:
            widget.add_events([next(stream) for _ in range(due)])
            sent += due
        if sent >= total or clock.elapsed() > max_wall * 1000:
            feeder.stop()
            QTimer.singleShot(300, app.quit)  # let the last redraw and paint happen

    heart = QTimer()
    heart.setTimerType(Qt.TimerType.PreciseTimer)
    heart.setInterval(heartbeat_interval)
    heart.timeout.connect(beat)
    feeder = QTimer()
    feeder.setTimerType(Qt.TimerType.PreciseTimer)
    feeder.setInterval(chunk_ms)
    feeder.timeout.connect(feed)
    cpu0 = time.process_time()
    clock.start()
    last[0] = begin = time.perf_counter()
    heart.start()
    feeder.start()
    app.exec()
    heart.stop()
    wall = clock.elapsed() / 1000.0
    cpu = (time.process_time() - cpu0) / wall  # feeding + redraws + paints, whatever else runs
    stalls = np.maximum(0.0, np.asarray(gaps[1:]) * 1000 - heartbeat_interval)
    redraw = np.asarray(widget.redraw_ms, dtype=float)
    widget.close()
    worst_at = float(stamps[1 + int(stalls.argmax())] - begin) if len(stalls) else 0.0
    steady = stalls[np.asarray(stamps[1:]) - begin > 1.0]  # after the run's first second (curve set-up)
    return {"events": sent, "wall": wall, "worst": float(stalls.max()) if len(stalls) else 0.0, "worst_at": worst_at,
            "steady": float(steady.max()) if len(steady) else 0.0,
            "p99": float(np.percentile(stalls, 99)) if len(stalls) else 0.0,
            "redraw": float(redraw.mean()) if len(redraw) else 0.0, "redraws": len(redraw),
            "redraw_per_s": float(redraw.sum()) / wall, "cpu": cpu}


def screenshot(path: Path) -> None:
    """Render a synthetic finished run into the dashboard and save a PNG of it."""
    import json
    import tempfile

    from backend.config import ExperimentConfig
    from backend.runs import EVENTS_FILE, create_run

    app = QApplication.instance() or QApplication(sys.argv)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = ExperimentConfig()
        cfg.name, cfg.method.name, cfg.schedule.epochs = "synthetic-demo", "moco", 40
        run_dir = create_run(tmp, cfg, run_id="20250101-120000-moco-resnet18-synthetic-demo")
        events = list(synthetic_events(epochs=40, steps_per_epoch=60, t0=1_735_732_800.0, step_seconds=0.05))
        cut = int(len(events) * 0.8)  # an unfinished run: the ETA shows
        last = events[cut - 1]
        events = events[:cut] + [{"kind": "log", "time": last["time"], "level": "warning",
                                  "message": f"non-finite loss at step {last.get('step', 0)}: update skipped"}]
        (run_dir / EVENTS_FILE).write_text("".join(json.dumps(e) + "\n" for e in events))
        dash = RunDashboard()
        dash.resize(1400, 900)
        dash.load_history(run_dir)
        dash.show()
        app.processEvents()
        path.parent.mkdir(parents=True, exist_ok=True)
        dash.grab().save(str(path))
        dash.close()
        dash.deleteLater()
    print(f"wrote {path}")


COLUMNS = (("rate/s", 8, "rate", "g"), ("events", 8, "events", "d"), ("wall s", 8, "wall", ".1f"),
           ("worst stall ms", 16, "worst", ".1f"), ("at s", 6, "worst_at", ".1f"),
           ("worst after 1 s", 17, "steady", ".1f"), ("p99 stall ms", 14, "p99", ".1f"),
           ("mean redraw ms", 16, "redraw", ".2f"), ("redraws", 9, "redraws", "d"),
           ("redraw ms/s", 13, "redraw_per_s", ".1f"), ("CPU %", 7, "cpu_percent", ".0f"))


def print_table(rows, rate: float) -> None:
    """One line per implementation."""
    header = f"{'implementation':<27}" + "".join(f"{title:>{width}}" for title, width, _, _ in COLUMNS)
    print(header)
    print("-" * len(header))
    for name, r in rows:
        values = {**r, "rate": rate, "cpu_percent": 100 * r["cpu"]}
        print(f"{name:<27}" + "".join(f"{values[key]:>{width}{fmt}}" for _, width, key, fmt in COLUMNS))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=500.0, help="events per second")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the stream")
    parser.add_argument("--chunk-ms", type=int, default=20, help="delivery interval (a pipe's read chunks)")
    parser.add_argument("--no-baseline", action="store_true", help="skip the naive baseline")
    parser.add_argument("--screenshot", type=Path, help="only write a PNG of a synthetic run and exit")
    args = parser.parse_args(argv)
    if args.screenshot:
        screenshot(args.screenshot)
        return 0
    app = QApplication.instance() or QApplication(sys.argv)
    load_before = os.getloadavg()[0]
    rows = [(f"dashboard (timer, {REFRESH_HZ} Hz)",
             measure(app, RunDashboard(), args.rate, args.seconds, args.chunk_ms, max_wall=args.seconds * 3 + 10))]
    if not args.no_baseline:
        rows.append(("naive (setData per event)",
                     measure(app, NaiveDashboard(), args.rate, args.seconds, args.chunk_ms,
                             max_wall=args.seconds * 1.5 + 5)))
    print(f"\nGUI latency: {args.rate:g} events/s for {args.seconds:g} s, delivered every {args.chunk_ms} ms, "
          f"heartbeat 1 ms, QT_QPA_PLATFORM={os.environ.get('QT_QPA_PLATFORM')}, {os.cpu_count()} CPUs, "
          f"load average {load_before:.1f} before / {os.getloadavg()[0]:.1f} after")
    print_table(rows, args.rate)
    if len(rows) == 2 and rows[0][1]["worst"] > 0:
        ours, naive = rows[0][1], rows[1][1]
        p99, cpu = naive["p99"] / max(ours["p99"], 1e-3), naive["cpu"] / max(ours["cpu"], 1e-6)
        print(f"\nworst stall {naive['worst'] / ours['worst']:.1f}x lower, p99 {p99:.1f}x lower, CPU {cpu:.1f}x "
              f"lower than the baseline; the baseline took {naive['wall']:.1f} s to take in "
              f"{naive['events']} events meant to span {args.seconds:g} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
