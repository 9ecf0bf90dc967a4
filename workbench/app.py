"""Entry point of the desktop app: ``workbench.app.main(argv)`` (``sslwb gui`` calls it).

``--screenshot PATH [--run-dir DIR]`` renders the main window offscreen (with that run open),
saves a PNG and exits 0; no settings are written in that mode.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

RESOURCES = Path(__file__).resolve().parent.parent / "resources"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sslwb gui", description="SSL Workbench desktop app")
    p.add_argument("--workspace", type=Path, help="workspace folder (default: the last one used)")
    p.add_argument("--config", type=Path, help="load this experiment config into the editor")
    p.add_argument("--run-dir", type=Path, help="open this run directory in a tab")
    p.add_argument("--screenshot", type=Path, metavar="PATH", help="save a PNG of the window and exit")
    p.add_argument("--size", default="1600x1000", help="window size for --screenshot (WxH)")
    return p


def style_sheet() -> str:
    """The application style sheet (resources/style.qss), or '' when missing."""
    path = RESOURCES / "style.qss"
    try:
        return path.read_text(encoding="utf-8")
    except OSError:
        return ""


def application(argv=None):
    """The QApplication (created once, with our names and style)."""
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance()
    if app is None:
        app = QApplication(list(argv or ["sslwb"]))
    app.setOrganizationName("SSLWorkbench")
    app.setApplicationName("SSL Workbench")
    app.setStyle("Fusion")
    app.setStyleSheet(style_sheet())
    return app


def settle(app, seconds: float = 0.5) -> None:
    """Process events for a while (layouts, timers, queued results)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        app.processEvents()
        time.sleep(0.01)


def take_screenshot(args) -> int:
    """Render the window offscreen with an optional run open and save a PNG."""
    from . import settings, workers
    from .main_window import MainWindow

    if args.run_dir is not None and not (args.run_dir / "config.json").is_file():
        print(f"error: {args.run_dir} is not a run directory (no config.json)", file=sys.stderr)
        return 2
    app = application()
    if args.workspace is None and args.run_dir is not None and args.run_dir.resolve().parent.name == "runs":
        args.workspace = args.run_dir.resolve().parent.parent  # show the run among its siblings
    if args.workspace is None:
        import tempfile
        args.workspace = Path(tempfile.mkdtemp(prefix="sslwb-shot-"))
    import tempfile
    settings.use_ini_file(Path(tempfile.mkdtemp(prefix="sslwb-shot-settings-")) / "settings.ini")
    workers.set_synchronous(True)
    try:
        w, h = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        w, h = 1600, 1000
    window = MainWindow(args.workspace, restore_layout=False)
    window.confirm_close = False
    window.resize(w, h)
    if args.config:
        window.editor.load_file(args.config)
    if args.run_dir:
        window.open_run(args.run_dir)
    window.show()
    settle(app, 0.3)
    window.preview.refresh()
    window.browser.refresh()
    settle(app, 0.7)
    args.screenshot.parent.mkdir(parents=True, exist_ok=True)
    ok = window.grab().save(str(args.screenshot))
    window.close()
    window.deleteLater()
    settle(app, 0.05)
    if not ok:
        print(f"error: could not write {args.screenshot}", file=sys.stderr)
        return 1
    print(f"saved {args.screenshot}")
    return 0


def main(argv=None) -> int:
    """Run the app (or take a screenshot); returns the exit code."""
    args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    if args.screenshot:
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
        return take_screenshot(args)
    from . import settings
    from .main_window import MainWindow

    app = application(sys.argv[:1])
    window = MainWindow(args.workspace or settings.workspace())
    if args.workspace:
        settings.set_workspace(args.workspace)
    if args.config:
        window.editor.load_file(args.config)
    if args.run_dir:
        window.open_run(args.run_dir)
    window.show()
    return app.exec()


if __name__ == "__main__":
    sys.exit(main())
