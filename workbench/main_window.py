"""The main window: editor, augmentation preview, runs browser and log as docks around a tab per
run (or comparison); File / Run / View / Help menus; the workspace folder."""

from __future__ import annotations

import gc
import json
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (QDockWidget, QFileDialog, QLabel, QMainWindow, QStackedWidget, QTabWidget,
                               QVBoxLayout, QWidget)

from backend.errors import WorkbenchError

from . import settings, workers
from .aug_preview import AugPreview
from .config_model import ConfigModel
from .editor import ExperimentEditor
from .log_view import LogView
from .run_manager import RunManager, run_key
from .run_panel import ComparePanel, RunPanel
from .runs_browser import RunsBrowser
from .window_session import (PAUSED_CHECKPOINT_NOTE, WELCOME, ask_close, clamp_to_screen, fill_recent_menu,
                             live_summary, restore_editor_config)
from .window_queue import install_queue
from .window_tools import RunToolsMixin

class MainWindow(RunToolsMixin, QMainWindow):
    """The application window. ``confirm_close``: ask before stopping live runs on close."""

    def __init__(self, workspace=None, *, restore_layout: bool = True):
        super().__init__()
        self.confirm_close = True
        self.workspace = Path(workspace) if workspace else settings.workspace()
        try:
            self.workspace.mkdir(parents=True, exist_ok=True)
        except OSError:
            pass  # shown as an empty workspace; File > Open workspace picks another
        self.setWindowTitle("SSL Workbench")
        self.resize(1500, 940)
        self.manager = RunManager(self.workspace, self)
        self.config_model = ConfigModel(parent=self)
        self.panels: dict[str, RunPanel] = {}
        self.inspect_windows: dict = {}  # run key -> InspectWindow

        self.tabs = QTabWidget()
        self.tabs.setTabsClosable(True)
        self.tabs.setMovable(True)
        self.tabs.setDocumentMode(True)
        self.tabs.tabCloseRequested.connect(self.close_tab)
        self.tabs.currentChanged.connect(lambda _i: self._update_actions())
        self.welcome_text = QLabel()
        self.welcome_text.setObjectName("welcome")
        self.welcome_text.setWordWrap(True)
        self.welcome_text.setFixedWidth(600)
        self.welcome = QWidget()
        box = QVBoxLayout(self.welcome)
        box.addStretch(1)
        box.addWidget(self.welcome_text, 0, Qt.AlignmentFlag.AlignHCenter)
        box.addStretch(2)
        self.central = QStackedWidget()
        self.central.addWidget(self.welcome)
        restore_editor_config(self.config_model)  # the config edited last time, or the quick preset
        self.central.addWidget(self.tabs)
        self.central.currentChanged.connect(lambda _i: self._update_actions())
        self.setCentralWidget(self.central)

        self.editor = ExperimentEditor(self.config_model)
        self.preview = AugPreview(self.config_model)
        self.browser = RunsBrowser(self.workspace, self.manager)
        self.log = LogView()
        self.editor_dock = self._dock("Experiment", self.editor, Qt.DockWidgetArea.LeftDockWidgetArea)
        self.runs_dock = self._dock("Runs", self.browser, Qt.DockWidgetArea.BottomDockWidgetArea)
        self.preview_dock = self._dock("Augmentation preview", self.preview, Qt.DockWidgetArea.BottomDockWidgetArea)
        self.log_dock = self._dock("Log", self.log, Qt.DockWidgetArea.BottomDockWidgetArea)
        # Bottom row: runs (with the log as a second tab) and the preview beside them, so the
        # centre keeps the width the plots need and the preview stays visible while editing.
        self.splitDockWidget(self.runs_dock, self.preview_dock, Qt.Orientation.Horizontal)
        self.tabifyDockWidget(self.runs_dock, self.log_dock)
        self.runs_dock.raise_()
        self._layout_pending = True  # default dock sizes are set once the window has its size

        self.workspace_label = QLabel()
        self.live_label = QLabel()
        self.statusBar().addPermanentWidget(self.live_label)
        self.statusBar().addPermanentWidget(self.workspace_label)
        self._build_actions()
        self._build_menus()

        self.editor.launchRequested.connect(self.launch)
        self.editor.message.connect(self.show_message)
        self.browser.openRequested.connect(self.open_run)
        self.browser.compareRequested.connect(self.compare_runs)
        self.browser.resumeRequested.connect(self.resume_run)
        self.browser.configRequested.connect(lambda run_dir: self.editor.load_file(Path(run_dir) / "config.json"))
        self.browser.inspectRequested.connect(self.inspect_run)
        self.browser.message.connect(self.show_message)
        self.manager.logLine.connect(self.log.append_line)
        self.manager.runChanged.connect(lambda _s: self._update_actions())
        self.browser.timer.timeout.connect(self.manager.poll_locks)  # "in use by ..." comes and goes
        self.config_model.validated.connect(self._update_actions)
        self._show_workspace()
        if restore_layout:
            geometry, state = settings.window_state()
            if geometry is not None and self.restoreGeometry(geometry):
                clamp_to_screen(self)
            if state is not None and self.restoreState(state):
                self._layout_pending = False
            for run_dir in settings.open_runs():  # the run tabs open when the app last closed
                self.open_run(run_dir)
        self._update_actions()
        # The ~400k objects of the libraries loaded by now (torch, Qt, ...) live as long as the app:
        # leave them out of garbage collection, or every full collection stalls the GUI ~300 ms.
        if not gc.get_freeze_count():  # once per process (later windows' garbage stays collectable)
            gc.freeze()

    # ---- construction -------------------------------------------------------------------
    def _dock(self, title: str, widget, area) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(title.replace(" ", "_") + "_dock")
        dock.setWidget(widget)
        dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable
                         | QDockWidget.DockWidgetFeature.DockWidgetClosable
                         | QDockWidget.DockWidgetFeature.DockWidgetFloatable)
        self.addDockWidget(area, dock)
        return dock

    def _action(self, text: str, slot, shortcut=None, tip: str = "") -> QAction:
        action = QAction(text, self)
        action.triggered.connect(slot)
        if shortcut:
            action.setShortcut(QKeySequence(shortcut))
        if tip:
            action.setStatusTip(tip)
            action.setToolTip(tip)
        return action

    def _build_actions(self) -> None:
        self.new_config_action = self._action("&New config", self.new_config, QKeySequence.StandardKey.New,
                                               "Reset the editor to the quick preset")
        self.open_config_action = self._action("&Open config…", self.editor.open_dialog, QKeySequence.StandardKey.Open)
        self.save_config_action = self._action("&Save config as…", self.editor.save_dialog, QKeySequence.StandardKey.Save)
        self.open_workspace_action = self._action("Open &workspace…", self.choose_workspace, "Ctrl+Shift+O",
                                                  "Choose the folder whose runs/ holds the runs")
        self.open_run_action = self._action("Open &run folder…", self.choose_run_dir, "Ctrl+R",
                                            "Open a run directory (finished, crashed or running)")
        self.quit_action = self._action("&Quit", self.close, QKeySequence.StandardKey.Quit)
        self.launch_action = self._action("&Launch", self.editor.launch, "Ctrl+Return",
                                          "Create a run from the editor and start training it")
        self.stop_action = self._action("&Stop", lambda: self.command_current("stop"), "Ctrl+.",
                                        "Checkpoint and stop the current run")
        self.pause_action = self._action("&Pause", lambda: self.command_current("pause"), "Ctrl+Shift+P",
                                         "Pause the current run between steps")
        self.resume_action = self._action("Res&ume", self.resume_current, "Ctrl+Shift+R",
                                          "Continue a paused run or restart a stopped one from its checkpoint")
        self.checkpoint_action = self._action("&Checkpoint now", lambda: self.command_current("checkpoint"),
                                              "Ctrl+Shift+K", "Save the current run's checkpoint now")
        self.about_action = self._action("&About SSL Workbench", self.about)
        self.docs_action = self._action("&Documentation", self.open_documentation, QKeySequence.StandardKey.HelpContents,
                                        "Open the documentation shipped with the workbench (README.md)")
        self.inspect_action = self._action("&Inspect run…", lambda: self.inspect_run(), "Ctrl+I",
                                           "Embeddings, attention maps, kNN / linear probe of a run's checkpoint")
        self.export_action = self._action("&Export encoder…", lambda: self.export_encoder(), "Ctrl+E",
                                          "Write a run's encoder as safetensors / TorchScript / ONNX with a model card")
        self.report_action = self._action("Comparison &report…", self.report_selected, tip="HTML report of the runs selected in Runs")
        self.config_diff_action = self._action("Compare &configs…", self.diff_selected, tip="Config diff of the runs selected in Runs")

    def _build_menus(self) -> None:
        bar = self.menuBar()
        file_menu = bar.addMenu("&File")
        file_menu.addAction(self.new_config_action)
        file_menu.addAction(self.open_config_action)
        self.recent_menu = file_menu.addMenu("Open &recent config")
        self.recent_menu.aboutToShow.connect(lambda: fill_recent_menu(self.recent_menu, self.editor))
        for action in (self.save_config_action, None, self.open_workspace_action, self.open_run_action, None,
                       self.quit_action):
            file_menu.addSeparator() if action is None else file_menu.addAction(action)
        run_menu = bar.addMenu("&Run")
        for action in (self.launch_action, None, self.stop_action, self.pause_action, self.resume_action,
                       self.checkpoint_action):
            run_menu.addSeparator() if action is None else run_menu.addAction(action)
        inspect_menu = bar.addMenu("&Inspect")
        inspect_menu.addAction(self.inspect_action)
        inspect_menu.addAction(self.export_action)
        inspect_menu.addActions([self.report_action, self.config_diff_action])
        view_menu = bar.addMenu("&View")
        for dock in (self.editor_dock, self.preview_dock, self.runs_dock, self.log_dock):
            view_menu.addAction(dock.toggleViewAction())
        install_queue(self, run_menu, view_menu)  # the Queue dock, Add to queue, Sweep…, Sweeps tab
        help_menu = bar.addMenu("&Help")
        help_menu.addAction(self.docs_action)
        help_menu.addAction(self.about_action)
        toolbar = self.addToolBar("Run")
        toolbar.setObjectName("run_toolbar")
        toolbar.setMovable(False)
        for action in (self.launch_action, self.stop_action, self.pause_action, self.resume_action,
                       self.checkpoint_action):
            toolbar.addAction(action)
        toolbar.addSeparator()
        toolbar.addAction(self.open_workspace_action)

    def apply_default_layout(self) -> None:
        """Size the docks in proportion to the window: editor ~27% wide, bottom row ~27% high."""
        w, h = self.width(), self.height()
        editor = max(340, min(460, int(0.27 * w)))
        bottom = max(170, min(300, int(0.27 * h)))
        self.resizeDocks([self.editor_dock], [editor], Qt.Orientation.Horizontal)
        self.resizeDocks([self.runs_dock], [bottom], Qt.Orientation.Vertical)
        rest = w - 10
        self.resizeDocks([self.runs_dock, self.preview_dock], [int(0.58 * rest), int(0.42 * rest)],
                         Qt.Orientation.Horizontal)
        self._layout_pending = False

    def showEvent(self, event):  # noqa: N802 - Qt override
        super().showEvent(event)
        if self._layout_pending:
            self.apply_default_layout()

    # ---- workspace ----------------------------------------------------------------------
    def set_workspace(self, path) -> None:
        """Switch to another workspace folder (remembered for next time)."""
        path = Path(path)
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            self.show_message(f"cannot use {path} as workspace: {exc.strerror or exc}")
            return
        self.workspace = path
        self.manager.workspace = path
        settings.set_workspace(path)
        self.browser.set_workspace(path)
        self.queue.set_workspace(path)
        self._show_workspace()

    def _show_workspace(self) -> None:
        self.workspace_label.setText(f"Workspace: {self.workspace}")
        self.welcome_text.setText(WELCOME.format(workspace=self.workspace))

    def choose_workspace(self) -> None:
        """Ask for a workspace folder."""
        path = QFileDialog.getExistingDirectory(self, "Workspace folder", str(self.workspace))
        if path:
            self.set_workspace(path)

    def choose_run_dir(self) -> None:
        """Ask for a run directory and open it."""
        path = QFileDialog.getExistingDirectory(self, "Run folder", str(self.workspace / "runs"))
        if path:
            self.open_run(Path(path))

    def new_config(self) -> None:
        """Reset the editor to the quick preset."""
        self.editor.apply_preset("quick")

    # ---- runs ---------------------------------------------------------------------------
    def launch(self, cfg, device: str, processes: int | None = None) -> RunPanel | None:
        """Create a run from ``cfg`` and start its trainer (in ``processes`` processes; default:
        the editor's choice, one per GPU or 1); returns its tab."""
        processes = self.editor.processes() if processes is None else processes
        try:
            state = self.manager.launch(cfg, device, processes)
        except (WorkbenchError, OSError) as exc:
            self.show_message(f"could not create the run: {workers.describe_error(exc)}")
            return None
        where = f"{device} x {processes} processes (torchrun)" if processes > 1 else device
        self.log.append_line(state.run_id, "status", f"launched on {where}: {state.run_dir}")
        self.show_message(f"launched {state.run_id}")
        return self._panel(state)

    def open_run(self, run_dir) -> RunPanel | None:
        """Show a run in its tab (re-reading its history when the tab is new)."""
        run_dir = Path(run_dir)
        panel = self.panels.get(run_key(run_dir))
        if panel is not None:
            self.tabs.setCurrentWidget(panel)
            return panel
        if not (run_dir / "config.json").exists():
            self.show_message(f"{run_dir} is not a run directory (no config.json)")
            return None
        return self._panel(self.manager.open(run_dir))

    def resume_run(self, run_dir) -> RunPanel | None:
        """Restart a stopped/crashed run from its checkpoint, in its tab."""
        panel = self.open_run(run_dir)
        if panel is None:
            return None
        state = self.manager.resume(run_dir)
        self.show_message(f"cannot resume {state.run_id}: in use by {state.holder}" if state.in_use
                          else f"resuming {state.run_id}")
        return panel

    def compare_runs(self, run_dirs) -> ComparePanel:
        """Open a tab overlaying the curves of ``run_dirs``."""
        panel = ComparePanel(run_dirs)
        self._add_tab(panel, panel.title(), ", ".join(Path(p).name for p in run_dirs))
        return panel

    def _panel(self, state) -> RunPanel:
        panel = RunPanel(state)  # its dashboard shows the run's ledger: history and live alike
        panel.commandRequested.connect(self.command_run)
        panel.resumeRequested.connect(self.resume_run)
        panel.cpuFallbackRequested.connect(self.manager.relaunch_on_cpu)
        self.panels[run_key(state.run_dir)] = panel
        self._add_tab(panel, panel.title(), str(state.run_dir))
        return panel

    def _add_tab(self, widget, title: str, tip: str) -> None:
        index = self.tabs.addTab(widget, title)
        self.tabs.setTabToolTip(index, tip)
        self.tabs.setCurrentIndex(index)
        self.central.setCurrentWidget(self.tabs)
        self._update_actions()  # the tab in front may be this one already (no currentChanged)

    def close_tab(self, index: int) -> None:
        """Close a tab (a live run keeps training; reopen it from the Runs panel)."""
        widget = self.tabs.widget(index)
        self.tabs.removeTab(index)
        if isinstance(widget, RunPanel):
            self.panels.pop(run_key(widget.run_dir), None)
        widget.deleteLater()
        if self.tabs.count() == 0:
            self.central.setCurrentWidget(self.welcome)
        self._update_actions()

    def current_panel(self) -> RunPanel | None:
        """The run tab in front, if any."""
        widget = self.tabs.currentWidget() if self.central.currentWidget() is self.tabs else None
        return widget if isinstance(widget, RunPanel) else None

    def command_current(self, command: str) -> None:
        """Send a control command to the run in front."""
        panel = self.current_panel()
        if panel is not None:
            self.command_run(panel.run_dir, command)

    def command_run(self, run_dir, command: str) -> bool:
        """Send a control command to a run's trainer (saying what a paused checkpoint does)."""
        sent = self.manager.command(run_dir, command)
        state = self.manager.state(run_dir)
        if sent and command == "checkpoint" and state is not None and state.state == "paused":
            self.show_message(PAUSED_CHECKPOINT_NOTE)
        return sent

    def resume_current(self) -> None:
        """Resume the run in front (paused: continue; stopped/crashed: restart from checkpoint)."""
        panel = self.current_panel()
        if panel is None:
            return
        if panel.state.live:
            self.manager.command(panel.run_dir, "resume")
        elif panel.state.resumable:
            self.resume_run(panel.run_dir)

    def _update_actions(self) -> None:
        panel = self.current_panel()
        s = panel.state if panel else None
        live = bool(s and s.live)
        steer = live and not s.detached  # a trainer from an earlier session only takes Stop
        self.launch_action.setEnabled(self.config_model.is_valid)
        self.stop_action.setEnabled(live and s.state != "stopping")
        self.pause_action.setEnabled(steer and s.state == "running")
        self.checkpoint_action.setEnabled(steer and s.state in ("running", "paused"))
        self.resume_action.setEnabled(bool(s and ((live and s.state == "paused") or s.resumable)))
        self.live_label.setText(live_summary([r.state for r in self.manager.live_runs()]))

    # ---- misc ---------------------------------------------------------------------------
    def ask_close(self, n_live: int) -> str:
        """Ask what becomes of the runs training: 'stop', 'keep' or 'cancel'."""
        return ask_close(self, n_live)

    def closeEvent(self, event):  # noqa: N802 - Qt override
        live = self.manager.live_runs()
        choice = self.ask_close(len(live)) if live and self.confirm_close else "stop"
        if choice == "cancel":
            event.ignore()
            return
        if choice == "keep":
            self.manager.detach_all()
        settings.save_window_state(self.saveGeometry(), self.saveState())
        settings.set_open_runs([w.run_dir for w in map(self.tabs.widget, range(self.tabs.count()))
                                if isinstance(w, RunPanel)])
        settings.set_value("editor/config", json.dumps(self.config_model.data()))
        self.browser.timer.stop()
        for inspect_window in list(self.inspect_windows.values()):
            inspect_window.close()
        self.queue.runner.shutdown()  # before the trainers stop: they stay queued for next time
        self.manager.shutdown()
        workers.wait_all(5.0)
        super().closeEvent(event)

