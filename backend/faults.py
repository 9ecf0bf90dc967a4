"""Fault injection for the fault-suite tests (tests/faults): makes a real trainer fail on cue.

Inert unless the environment variable ``SSLWB_FAULT`` is set when the trainer starts. Its value is
one or more comma-separated faults, each ``KIND[:ARG]@step=K``; the fault fires while the step
whose metrics would carry step number K (1-based) is being computed, after its backward pass:

- ``raise@step=3``    raise ``RuntimeError`` (an unexpected exception in the step)
- ``abort@step=3``    ``os.abort()`` (SIGABRT, as a crash in native code would)
- ``kill@step=3``     SIGKILL the trainer itself
- ``hang@step=2``     sleep forever inside the step (signals and stdin commands cannot end it)
- ``sleep:2.5@step=3`` sleep ARG seconds inside the step (a slow step), then carry on
- ``nan@step=4``      make the step's loss NaN (the loop's non-finite handling takes over)
- ``enospc:SITE@step=4`` the disk is full for one write site from step 4 on (``step=0``: from the
  start): the next write there stores half its bytes, then fails with ENOSPC. SITE is one of
  ``events`` (events.jsonl), ``metrics`` (metrics.h5), ``cache`` (the data cache),
  ``embeddings`` (inspect/ caches), ``export`` (export files)

Example: ``SSLWB_FAULT="nan@step=2,nan@step=3,raise@step=9"``. Each fault prints one line naming
itself to stderr before acting, so a test (or a person) can tell an injected failure from a real one.
"""

from __future__ import annotations

import errno
import os
import re
import signal
import sys
import time
from typing import NamedTuple

ENV_VAR = "SSLWB_FAULT"
KINDS = ("raise", "abort", "kill", "hang", "sleep", "nan", "enospc")
WRITE_SITES = ("events", "metrics", "cache", "embeddings", "export")
_ITEM = re.compile(r"^(?P<kind>[a-z]+)(?::(?P<arg>[a-z0-9.]+))?@step=(?P<step>[0-9]+)$")


class Fault(NamedTuple):
    """One planned fault: what happens, at which step, with an optional numeric argument."""

    kind: str
    step: int
    arg: float | str | None = None


def parse_faults(text: str) -> list[Fault]:
    """Parse an ``SSLWB_FAULT`` value; a malformed item raises ValueError naming it and the syntax."""
    faults = []
    for item in (part.strip() for part in (text or "").split(",")):
        if not item:
            continue
        match = _ITEM.match(item)
        if match is None or match["kind"] not in KINDS:
            raise ValueError(f"{ENV_VAR}: cannot read {item!r}; expected KIND[:ARG]@step=K with KIND one of "
                             f"{', '.join(KINDS)} (e.g. raise@step=3, sleep:2@step=4)")
        if match["kind"] == "sleep" and match["arg"] is None:
            raise ValueError(f"{ENV_VAR}: {item!r} needs a duration in seconds, e.g. sleep:2@step=4")
        if match["kind"] == "enospc":
            if match["arg"] not in WRITE_SITES:
                raise ValueError(f"{ENV_VAR}: {item!r} needs a write site, one of {', '.join(WRITE_SITES)} "
                                 f"(e.g. enospc:events@step=3)")
            faults.append(Fault("enospc", int(match["step"]), match["arg"]))
            continue
        try:
            arg = float(match["arg"]) if match["arg"] else None
        except ValueError:
            raise ValueError(f"{ENV_VAR}: {item!r}: {match['arg']!r} is not a number") from None
        faults.append(Fault(match["kind"], int(match["step"]), arg))
    return faults


_PLAN: dict[int, list[Fault]] = {}
_FULL: set[str] = set()   # write sites whose disk is full now
for _fault in parse_faults(os.environ.get(ENV_VAR, "")):
    if _fault.kind == "enospc" and _fault.step == 0:
        _FULL.add(_fault.arg)
    else:
        _PLAN.setdefault(_fault.step, []).append(_fault)


def disk_full(site: str) -> bool:
    """Whether an injected full disk refuses writes at ``site`` now (False unless SSLWB_FAULT)."""
    return site in _FULL


def enospc() -> OSError:
    """The error a full disk raises."""
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def inject(step: int, loss):
    """Fire the faults planned for ``step`` and return the loss (NaN for ``nan``); a no-op when
    ``SSLWB_FAULT`` was not set."""
    if not _PLAN or step not in _PLAN:
        return loss
    for fault in _PLAN[step]:
        print(f"fault injection: {fault.kind} at step {step}", file=sys.stderr, flush=True)
        if fault.kind == "raise":
            raise RuntimeError(f"injected fault at step {step}")
        if fault.kind == "abort":
            os.abort()
        if fault.kind == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        if fault.kind == "hang":
            while True:
                time.sleep(3600)
        if fault.kind == "sleep":
            time.sleep(fault.arg)
        if fault.kind == "nan":
            loss = loss * float("nan")
        if fault.kind == "enospc":
            _FULL.add(fault.arg)
    return loss
