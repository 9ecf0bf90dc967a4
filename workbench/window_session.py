"""The main window's texts and session helpers: the welcome page, the status bar's live-run
summary, the quit question, a restored geometry that fits its screen, the shipped documentation."""

from __future__ import annotations

import json
from pathlib import Path

from PySide6.QtCore import QRect
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QMessageBox, QWidget

from backend.config import ExperimentConfig
from backend.errors import ConfigError

from . import settings

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PAUSED_CHECKPOINT_NOTE = ("checkpoint requested while paused: it is written now (a multi-GPU run writes it "
                          "when it resumes)")

WELCOME = """
<h2>SSL Workbench</h2>
<p style='color:#888'>Self-supervised representation learning, from config to comparison.</p>
<ol style='line-height:150%'>
<li>Pick a <b>method</b> and a <b>preset</b> in the Experiment panel. The <i>quick</i> preset trains a
tiny network on synthetic shapes in about a minute on a CPU.</li>
<li>Check the augmentations in the <b>Augmentation preview</b>; fix anything marked in red.</li>
<li>Press <b>Launch</b>. Each run gets a tab here with live curves, progress and controls.</li>
<li>In <b>Runs</b>, double-click a run to reopen it, select several to <b>Compare</b>, or
<b>Resume</b> a stopped one.</li>
</ol>
<p style='color:#888'>Workspace: {workspace}</p>
"""


def clamp_to_screen(window: QWidget) -> None:
    """Shrink and move ``window`` so its frame lies inside the available geometry of its screen
    (a geometry saved at another scale factor or on a larger monitor can be bigger than it)."""
    screen = window.screen() or QGuiApplication.primaryScreen()
    if screen is None:
        return
    avail: QRect = screen.availableGeometry()
    frame = window.frameGeometry()
    extra_w = max(0, frame.width() - window.width())
    extra_h = max(0, frame.height() - window.height())
    width = min(window.width(), avail.width() - extra_w)
    height = min(window.height(), avail.height() - extra_h)
    if (width, height) != (window.width(), window.height()):
        window.resize(max(200, width), max(150, height))
    frame = window.frameGeometry()
    x = min(max(frame.x(), avail.x()), avail.x() + avail.width() - frame.width())
    y = min(max(frame.y(), avail.y()), avail.y() + avail.height() - frame.height())
    if (x, y) != (frame.x(), frame.y()):
        window.move(x, y)


def documentation_path() -> Path | None:
    """The documentation shipped with the package: README.md, else the docs folder."""
    for candidate in (PROJECT_ROOT / "README.md", PROJECT_ROOT / "docs"):
        if candidate.exists():
            return candidate
    return None


def live_summary(states: list[str]) -> str:
    """Status bar text for the runs whose trainer is running here: '1 run training',
    '1 run paused', '2 training, 1 paused' ('' when none)."""
    paused = sum(1 for s in states if s == "paused")
    training = len(states) - paused
    if not states:
        return ""
    if not paused or not training:
        n = len(states)
        return f"{n} run{'s' if n != 1 else ''} {'paused' if paused else 'training'}"
    return f"{training} training, {paused} paused"


def ask_close(parent: QWidget, n_live: int) -> str:
    """Ask what becomes of the runs training when the window closes: 'stop', 'keep' (training
    in the background, shown live again when the workbench reopens) or 'cancel'."""
    box = QMessageBox(QMessageBox.Icon.Question, "Runs are training",
                      f"{n_live} run{'s are' if n_live != 1 else ' is'} training.", parent=parent)
    box.setInformativeText("Stop them (a checkpoint is saved), or keep them training in the background: "
                           "they show live again when you reopen the workbench.")
    stop = box.addButton("Stop them and quit", QMessageBox.ButtonRole.DestructiveRole)
    keep = box.addButton("Keep training in the background", QMessageBox.ButtonRole.AcceptRole)
    box.addButton(QMessageBox.StandardButton.Cancel)
    box.exec()
    return {id(stop): "stop", id(keep): "keep"}.get(id(box.clickedButton()), "cancel")


def restore_editor_config(config_model) -> None:
    """Fill the editor's model with the config edited last time, or the quick preset."""
    saved = settings.value("editor/config", "")
    try:
        data = json.loads(saved) if saved else None
        if data is not None:
            ExperimentConfig.from_dict(data, validate=False)  # same schema as now?
            config_model.set_data(data)
            return
    except (ValueError, TypeError, ConfigError):
        pass
    try:
        config_model.apply_preset("quick")
        config_model.modified = False
    except ConfigError:
        pass


def fill_recent_menu(menu, editor) -> None:
    """Fill File > Recent with the recently used config files (each loads into ``editor``)."""
    menu.clear()
    recent = settings.recent_configs()
    for path in recent:
        menu.addAction(path, lambda p=path: editor.load_file(p))
    if not recent:
        menu.addAction("(none yet)").setEnabled(False)
