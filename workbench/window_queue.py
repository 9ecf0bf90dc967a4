"""The main window's run queue and sweeps: the Queue dock, the runner that starts queued runs
(each gets its run tab, as a launch does), the editor's Add to queue and Sweep… and the Sweeps
tab. ``install_queue(window)`` wires it all into a ``MainWindow``."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject, Qt
from PySide6.QtWidgets import QDialog

from backend.errors import WorkbenchError

from . import workers
from .queue_runner import QueueRunner
from .queue_view import QueueView
from .sweep_dialog import SweepDialog
from .sweep_view import SweepView


class QueueTools(QObject):
    """What ``install_queue`` attaches to the window (as ``window.queue``)."""

    def __init__(self, window):
        super().__init__(window)
        self.window = window
        self.runner = QueueRunner(window.manager, window.workspace, self)
        self.view = QueueView(self.runner)
        self.dock = window._dock("Queue", self.view, Qt.DockWidgetArea.BottomDockWidgetArea)
        window.tabifyDockWidget(window.runs_dock, self.dock)
        window.runs_dock.raise_()
        self.sweep_view: SweepView | None = None
        self.runner.runStarted.connect(self._started)
        self.runner.runEnded.connect(self._ended)
        self.runner.message.connect(window.show_message)
        self.view.message.connect(window.show_message)
        self.view.openRequested.connect(window.open_run)
        window.editor.queueRequested.connect(self.add_to_queue)
        window.editor.sweepRequested.connect(self.sweep_dialog)
        self.queue_action = window._action("Add to &queue", lambda: window.editor.launch(window.editor.queueRequested),
                                           "Ctrl+Shift+Return", "Create a run from the editor and queue it")
        self.sweep_action = window._action("S&weep…", lambda: window.editor.launch(window.editor.sweepRequested),
                                           tip="A grid or random sweep over chosen fields, queued")
        self.sweeps_action = window._action("Show s&weeps", lambda: self.show_sweeps(),
                                            tip="The sweeps of the workspace: table and heatmap")

    def add_menus(self, run_menu, view_menu) -> None:
        """Put the queue actions in the Run menu and the dock's toggle in View."""
        first = run_menu.actions()[1] if len(run_menu.actions()) > 1 else None
        run_menu.insertActions(first, [self.queue_action, self.sweep_action, self.sweeps_action])
        view_menu.addAction(self.dock.toggleViewAction())

    # ---- editor actions -------------------------------------------------------------------
    def add_to_queue(self, cfg, device: str):
        """Create a run from the editor's config and queue it; returns its run dir."""
        try:
            run_dir = self.runner.add(cfg, device)
        except (WorkbenchError, OSError) as exc:
            self.window.show_message(f"could not queue the run: {workers.describe_error(exc)}")
            return None
        self.window.show_message(f"queued {Path(run_dir).name}")
        self.dock.show()
        self.dock.raise_()
        return run_dir

    def sweep_dialog(self, cfg, device: str, *, exec_dialog: bool = True) -> SweepDialog:
        """Open the Sweep dialog on the editor's config; on OK the runs are queued and the Sweeps
        tab shows them. ``exec_dialog=False`` returns the dialog unshown (tests, scripts): call
        ``accept()`` on it, then ``sweep_created(dialog)``."""
        dialog = SweepDialog(cfg, self.runner.queue.workspace, device, parent=self.window)
        if exec_dialog and dialog.exec() == QDialog.DialogCode.Accepted:
            self.sweep_created(dialog)
        return dialog

    def sweep_created(self, dialog: SweepDialog) -> SweepView:
        """After the dialog made its runs: start what fits and show the sweep."""
        self.window.show_message(f"sweep {dialog.sweep_id}: {len(dialog.run_dirs)} runs queued")
        self.runner.poll()
        view = self.show_sweeps(dialog.sweep_id)
        return view

    # ---- tabs -----------------------------------------------------------------------------
    def show_sweeps(self, sweep_id: str | None = None) -> SweepView:
        """Open (or bring to the front) the Sweeps tab, showing ``sweep_id`` when given."""
        window = self.window
        if self.sweep_view is None or window.tabs.indexOf(self.sweep_view) < 0:
            self.sweep_view = SweepView(self.runner.queue.workspace, window.manager)
            self.sweep_view.destroyed.connect(self._sweep_view_gone)
            self.sweep_view.openRequested.connect(window.open_run)
            window._add_tab(self.sweep_view, "Sweeps", "The workspace's sweeps")
        else:
            window.tabs.setCurrentWidget(self.sweep_view)
            window.central.setCurrentWidget(window.tabs)
        if sweep_id:
            self.sweep_view.show_sweep(sweep_id)
        else:
            self.sweep_view.reload_sweeps()
        return self.sweep_view

    def _sweep_view_gone(self, *_a) -> None:
        self.sweep_view = None

    def _started(self, run_dir: str) -> None:
        """A queued run started: its tab opens (in the background when a Sweeps tab is in front)."""
        current = self.window.tabs.currentWidget()
        self.window.log.append_line(Path(run_dir).name, "status", f"started from the queue: {run_dir}")
        self.window.open_run(run_dir)
        if current is not None and current is self.sweep_view:
            self.window.tabs.setCurrentWidget(current)

    def _ended(self, run_dir: str, state: str) -> None:
        if self.sweep_view is not None and self.window.tabs.indexOf(self.sweep_view) >= 0:
            self.sweep_view.refresh(force=True)

    def set_workspace(self, workspace) -> None:
        """Follow another workspace's queue and sweeps."""
        self.runner.set_workspace(workspace)
        if self.sweep_view is not None and self.window.tabs.indexOf(self.sweep_view) >= 0:
            self.sweep_view.set_workspace(workspace)


def install_queue(window, run_menu, view_menu) -> QueueTools:
    """Attach the queue and sweeps to a ``MainWindow`` (as ``window.queue``)."""
    window.queue = QueueTools(window)
    window.queue.add_menus(run_menu, view_menu)
    return window.queue
