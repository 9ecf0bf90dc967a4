"""A one-line terminal progress display for ``sslwb train`` when stdout is a TTY."""

from __future__ import annotations

import sys
import time

from .ledger import RunLedger, format_duration


class ProgressPrinter:
    """Turns the event stream into a redrawn status line (step/total, epoch, loss, kNN, img/s, ETA);
    the counters and the ETA are the run ledger's, the same the GUI shows."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stdout
        self.ledger = RunLedger(keep_series=False, max_logs=1)
        self._last_draw = 0.0

    def on_event(self, event: dict) -> None:
        """Consume one event; redraw at most 10 times a second."""
        self.ledger.apply([event])
        kind = event["kind"]
        if kind == "status":
            if event.get("state") in ("finished", "stopped", "checkpoint", "resumed", "paused"):
                self._line(force=True)
                self.stream.write(f"\n{event['state']}: {event.get('message', '')}\n")
                self.stream.flush()
        elif kind == "metric":
            self._line()
        elif kind in ("log", "error"):
            self.stream.write(f"\n{event.get('level', 'error')}: {event['message']}\n")
            self.stream.flush()

    def _line(self, force: bool = False) -> None:
        now = time.time()
        if not force and now - self._last_draw < 0.1:
            return
        self._last_draw = now
        led = self.ledger
        width = 30
        frac = led.fraction() or 0.0
        bar = "#" * int(frac * width) + "-" * (width - int(frac * width))
        eta = format_duration(led.eta_seconds())
        parts = [f"[{bar}] {led.step}/{led.total_steps} ep {led.shown_epoch()}"]
        for name, fmt in (("loss", "loss {:.4f}"), ("knn_top1", "kNN {:.3f}"), ("throughput", "{:.0f} img/s")):
            if name in led.latest:
                parts.append(fmt.format(led.latest[name]))
        self.stream.write("\r" + "  ".join(parts) + (f" eta {eta}" if eta and led.state != "finished" else "")
                          + "   ")
        self.stream.flush()

    def close(self) -> None:
        """End the status line."""
        self.stream.write("\n")
        self.stream.flush()
