"""Guard against PySide6 6.12's lost references to None/True/False on Python 3.11.

PySide6 6.12 returns ``None`` from void methods (``setPen``, ``drawLine``, ``setData``...) and
``True`` from ``Signal.emit`` without taking a reference, as if they were immortal objects (they are
only from Python 3.12 on, PEP 683). On 3.11 each such call lowers their reference count by one,
and after some thousands of calls (seconds of live plotting) CPython aborts with
"Fatal Python error: none_dealloc". ``protect_singletons`` adds a huge number of references to the
three objects once, which is what 3.12's immortality amounts to; it does nothing on 3.12+.
"""

from __future__ import annotations

import ctypes
import sys

_EXTRA_REFERENCES = 1 << 40  # about 10^12 leaked references before the count could reach zero
_done = False


def protect_singletons() -> bool:
    """Make None, True and False effectively immortal on Python < 3.12; True when applied."""
    global _done
    if _done or sys.version_info >= (3, 12) or hasattr(sys, "gettotalrefcount"):
        return False  # nothing to do, or a debug build whose object header differs
    for obj in (None, True, False):
        # ob_refcnt is the first field of every object in release builds of CPython 3.11.
        refcount = ctypes.c_ssize_t.from_address(id(obj))
        refcount.value += _EXTRA_REFERENCES
    _done = True
    return True
