"""A stand-in trainer that floods its run with metric events: ``python benchmarks/event_flood.py
RUN_DIR RATE SECONDS`` writes RATE events/s for SECONDS with the real ``EventWriter`` (to
``events.jsonl`` and stdout, as the trainer does), ten metric names per step, then "finished".

Used as the trainer of a GUI run by ``benchmarks/gui_latency.py --process`` and by the event-flood
fault test (``tests/faults/test_process_faults.py``); needs the project root on PYTHONPATH.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

NAMES = ("loss", "lr", "alignment", "uniformity", "embedding_std", "effective_rank",
         "backbone_alignment", "backbone_uniformity", "backbone_embedding_std", "backbone_effective_rank")


def flood(run_dir: Path, rate: float, seconds: float) -> int:
    """Write the events (paced against the wall clock) and return how many metric events."""
    from backend.events import EventWriter

    steps = int(rate * seconds) // len(NAMES)
    writer = EventWriter(run_dir / "events.jsonl")
    writer.status("started", "event flood")
    writer.status("running", f"{steps} steps", total_steps=steps, steps_per_epoch=100, epochs=steps // 100)
    start = time.monotonic()
    for step in range(1, steps + 1):
        delay = start + step * len(NAMES) / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        for i, name in enumerate(NAMES):
            writer.metric(name, 1.0 / step + i, step, (step - 1) // 100)
    writer.status("finished", f"finished {steps} steps", step=steps)
    writer.close()
    return steps * len(NAMES)


if __name__ == "__main__":
    flood(Path(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]))
