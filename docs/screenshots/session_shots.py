"""Grab PNGs of the main window, a run's dashboard and the compare view in the light or dark
palette: ``python docs/screenshots/session_shots.py OUT_DIR light|dark [TAG]`` (offscreen; set
QT_SCALE_FACTOR for HiDPI). Uses hand-written runs in a temporary workspace."""

from __future__ import annotations

import math
import sys
import tempfile
from pathlib import Path

from PySide6.QtGui import QColor, QPalette

from tests.workbench.conftest import write_fake_run
from workbench import settings
from workbench.app import application, settle


def dark_palette() -> QPalette:
    """A typical dark system palette."""
    p = QPalette()
    roles = {QPalette.ColorRole.Window: "#2b2b2b", QPalette.ColorRole.WindowText: "#e6e6e6",
             QPalette.ColorRole.Base: "#1e1e1e", QPalette.ColorRole.AlternateBase: "#333333",
             QPalette.ColorRole.Text: "#e6e6e6", QPalette.ColorRole.Button: "#3a3a3a",
             QPalette.ColorRole.ButtonText: "#e6e6e6", QPalette.ColorRole.Highlight: "#2f65ca",
             QPalette.ColorRole.HighlightedText: "#ffffff", QPalette.ColorRole.Mid: "#5a5a5a",
             QPalette.ColorRole.Midlight: "#4a4a4a", QPalette.ColorRole.Dark: "#202020",
             QPalette.ColorRole.ToolTipBase: "#3a3a3a", QPalette.ColorRole.ToolTipText: "#e6e6e6",
             QPalette.ColorRole.PlaceholderText: "#9a9a9a"}
    for role, colour in roles.items():
        p.setColor(role, QColor(colour))
    for role in (QPalette.ColorRole.WindowText, QPalette.ColorRole.Text, QPalette.ColorRole.ButtonText):
        p.setColor(QPalette.ColorGroup.Disabled, role, QColor("#7a7a7a"))
    return p


def main(out: Path, mode: str, tag: str = "") -> None:
    """Write main_<mode|tag>.png, dashboard_<mode>.png and compare_<mode>.png into ``out``."""
    tmp = Path(tempfile.mkdtemp())
    settings.use_ini_file(tmp / "settings.ini")
    app = application()
    if mode == "dark":
        app.setPalette(dark_palette())
    from workbench.main_window import MainWindow
    ws = tmp / "ws"
    ws.mkdir()
    runs = [write_fake_run(ws, "stopped", epochs=6, steps_per_epoch=20, name="baseline"),
            write_fake_run(ws, "finished", epochs=6, steps_per_epoch=20, name="strong aug", knn=0.7)]
    win = MainWindow(ws, restore_layout=False)
    win.confirm_close = False
    win.resize(1500, 940)
    win.show()
    win.browser.refresh()
    panel = win.open_run(runs[0])
    settle(app, 1.5)
    out.mkdir(parents=True, exist_ok=True)
    win.grab().save(str(out / f"main_{tag or mode}.png"))
    panel.grab().save(str(out / f"dashboard_{mode}.png"))
    win.compare_runs(runs)
    settle(app, 1.5)
    win.tabs.currentWidget().grab().save(str(out / f"compare_{mode}.png"))
    win.close()


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else "")
