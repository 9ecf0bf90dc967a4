"""A one-line terminal progress display for ``sslwb train`` when stdout is a TTY."""

from __future__ import annotations

import sys
import time


class ProgressPrinter:
    """Turns the event stream into a redrawn status line (step/total, epoch, loss, kNN, img/s, ETA)."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stdout
        self.total = 0
        self.values: dict[str, float] = {}
        self.step = 0
        self.epoch = 0
        self.start = time.time()
        self.start_step = None
        self._last_draw = 0.0

    def on_event(self, event: dict) -> None:
        """Consume one event; redraw at most 10 times a second."""
        kind = event["kind"]
        if kind == "status":
            self.total = event.get("total_steps", self.total)
            if event.get("state") in ("finished", "stopped", "checkpoint", "resumed", "paused"):
                self._line(force=True)
                self.stream.write(f"\n{event['state']}: {event.get('message', '')}\n")
                self.stream.flush()
        elif kind == "metric":
            self.values[event["name"]] = event["value"]
            self.step, self.epoch = event["step"], event["epoch"]
            if self.start_step is None:
                self.start_step, self.start = self.step, time.time()
            self._line()
        elif kind in ("log", "error"):
            self.stream.write(f"\n{event.get('level', 'error')}: {event['message']}\n")
            self.stream.flush()

    def _line(self, force: bool = False) -> None:
        now = time.time()
        if not force and now - self._last_draw < 0.1:
            return
        self._last_draw = now
        width = 30
        frac = self.step / self.total if self.total else 0.0
        bar = "#" * int(frac * width) + "-" * (width - int(frac * width))
        eta = ""
        done = self.step - (self.start_step or 0)
        if done > 0 and self.total:
            eta = f" eta {int((now - self.start) / done * (self.total - self.step))}s"
        parts = [f"[{bar}] {self.step}/{self.total} ep {self.epoch + 1}"]
        for name, fmt in (("loss", "loss {:.4f}"), ("knn_top1", "kNN {:.3f}"), ("throughput", "{:.0f} img/s")):
            if name in self.values:
                parts.append(fmt.format(self.values[name]))
        self.stream.write("\r" + "  ".join(parts) + eta + "   ")
        self.stream.flush()

    def close(self) -> None:
        """End the status line."""
        self.stream.write("\n")
        self.stream.flush()
