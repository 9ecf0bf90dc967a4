"""The training engine's entry point: one loop runs every method (docs/ARCHITECTURE.md: data flow and trainer
contract); the loop itself lives in ``backend.training`` (setup, step, loop).

``run_training(run_dir)`` reads the run's config.json, trains, streams events, writes checkpoints
and returns the process exit code (0 finished/stopped, 2 config error, 3 data error, 1 other).
"""

from __future__ import annotations

import sys
import traceback
from pathlib import Path

from . import distributed as D
from .control import TrainerControl
from .errors import WorkbenchError
from .events import EventWriter, NullEventWriter
from .progress import ProgressPrinter
from .run_start import OpenedRun, device_hint, existing_run, join_group, open_run
from .runs import EVENTS_FILE
from .training.loop import Trainer
from .training.scalars import FLUSH_SECONDS, probe_metrics  # noqa: F401 - public names of the engine
from .training.setup import prepare, seed_everything  # noqa: F401
from .training.state import CHECKPOINT_FORMAT, RESUME_KEYS, LoopState, resume_mismatches  # noqa: F401
from .training.step import MAX_BAD_STEPS  # noqa: F401


def run_training(run_dir, *, resume: bool = False, control: TrainerControl | None = None,
                 echo: bool = True, tty: bool = False, on_event=None, opened: OpenedRun | None = None) -> int:
    """Train the run in ``run_dir`` and return the exit code; never raises for user errors.
    ``on_event(event)`` sees every event rank 0 writes (e.g. an in-process progress display).
    ``opened``: the run as ``backend.run_start.open_run`` opened it (``sslwb train`` with a new
    config); by default rank 0 opens ``run_dir`` itself, taking its writer lock first (another
    live writer: exit 4, nothing touched)."""
    if opened is None:
        run_dir = Path(run_dir)
        opened = open_run(join_group(device_hint(run_dir, None)), existing_run(run_dir),
                          on_error=lambda exc: _report_in_run(run_dir, exc, echo))
        if isinstance(opened, int):
            D.cleanup()
            return opened
    run_dir, dist_info = opened.run_dir, opened.dist
    printer = ProgressPrinter() if tty and dist_info.is_main else None
    if dist_info.is_main:  # only rank 0 writes events, metrics and checkpoints
        listeners = [f for f in (printer.on_event if printer else None, on_event) if f is not None]
        events = EventWriter(run_dir / EVENTS_FILE, echo=echo and not tty,
                             on_event=_fan_out(listeners) if listeners else None)
    else:
        events = NullEventWriter()
    control = control or TrainerControl(read_stdin=False)
    try:
        return Trainer(prepare(run_dir, resume, control, events, dist_info, cfg=opened.cfg)).fit()
    except WorkbenchError as exc:
        events.error(str(exc), exc.exit_code)
        return exc.exit_code
    except Exception as exc:  # noqa: BLE001 - any other failure: one sentence, exit 1
        traceback.print_exc(file=sys.stderr)
        events.error(f"training failed: {type(exc).__name__}: {exc}", 1, unexpected=True)
        return 1
    finally:
        if printer:
            printer.close()
        events.close()
        opened.release()
        D.cleanup()


def _report_in_run(run_dir: Path, exc: WorkbenchError, echo: bool) -> int:
    """A failure before training (rank 0, lock held): one sentence on stderr, and an error event
    in the run's events.jsonl when the run directory exists."""
    print(f"error: {exc}", file=sys.stderr)
    if run_dir.is_dir():
        events = EventWriter(run_dir / EVENTS_FILE, echo=echo)
        events.error(str(exc), exc.exit_code)
        events.close()
    return exc.exit_code


def _fan_out(listeners):
    """One on_event callback calling each listener in turn."""
    if len(listeners) == 1:
        return listeners[0]
    return lambda event: [listener(event) for listener in listeners]
