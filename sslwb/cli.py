"""Dispatch ``sslwb ARGS``: ``gui`` to the desktop app, everything else to ``backend.cli``.

This layer may import both the engine and the GUI; the engine never imports this package or
the GUI (tests/test_architecture.py)."""

from __future__ import annotations

import sys

GUI_HELP = "start the desktop app (options: --workspace, --config, --run-dir, --screenshot PATH)"


def main(argv=None) -> int:
    """Run ``sslwb`` with ``argv`` (default: the process arguments); returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["gui"]:  # the app parses its own options
        from workbench.app import main as gui_main
        return gui_main(argv[1:])
    from backend.cli import main as engine_main
    return engine_main(argv, front_commands=[("gui", GUI_HELP)])


def entry() -> None:
    """Console-script wrapper: exit with main()'s code."""
    sys.exit(main())
