"""The main window's Inspect, Export and Help actions: a run's Inspect window or export dialog
(for the run in front, the one selected in Runs, or one the user picks), the shipped
documentation, the about box."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, QUrl
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import QFileDialog, QMessageBox

from backend import __version__

from .run_manager import run_key
from .window_session import documentation_path


class RunToolsMixin:
    """Mixed into ``MainWindow`` (uses its ``current_panel``, ``browser``, ``workspace``,
    ``inspect_windows`` and ``show_message``)."""

    def _target_run(self):
        """The run tab in front, else the run selected in Runs, else one the user picks."""
        panel = self.current_panel()
        selected = self.browser.selected_dirs()
        if panel is not None or selected:
            return panel.run_dir if panel is not None else selected[0]
        path = QFileDialog.getExistingDirectory(self, "Run folder", str(self.workspace / "runs"))
        return Path(path) if path else None

    def inspect_run(self, run_dir=None):
        """Open (or raise) the Inspect window of a run."""
        from .inspect_window import InspectWindow

        run_dir = Path(run_dir) if run_dir else self._target_run()
        if run_dir is None or not (run_dir / "config.json").exists():
            if run_dir is not None:
                self.show_message(f"cannot inspect {run_dir}: not a run directory (no config.json)")
            return None
        key = run_key(run_dir)
        window = self.inspect_windows.get(key)
        if window is None:
            window = self.inspect_windows[key] = InspectWindow(run_dir, parent=self)
            window.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose, True)
            window.destroyed.connect(lambda *_a, k=key: self.inspect_windows.pop(k, None))
        window.show()
        window.raise_()
        return window

    def export_encoder(self, run_dir=None):
        """Open the export dialog of a run."""
        from .export_dialog import ExportDialog

        run_dir = Path(run_dir) if run_dir else self._target_run()
        if run_dir is None:
            return None
        dialog = ExportDialog(run_dir, parent=self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose, True)
        dialog.show()
        return dialog

    def open_documentation(self) -> bool:
        """Open the shipped documentation (README.md) with the desktop's viewer."""
        path = documentation_path()
        if path is None:
            self.show_message("cannot find the documentation: README.md is not beside the workbench package")
            return False
        return QDesktopServices.openUrl(QUrl.fromLocalFile(str(path)))

    def show_message(self, text: str) -> None:
        """A transient status bar message (also logged)."""
        self.statusBar().showMessage(text, 8000)
        self.log.append_line("gui", "error" if text.startswith(("could not", "cannot")) else "info", text)

    def about(self) -> None:
        """The about box."""
        QMessageBox.about(self, "About SSL Workbench",
                          f"<b>SSL Workbench</b> {__version__}<br>A workbench for self-supervised visual "
                          "representation learning: configure, train, watch and compare runs.")

    def report_selected(self):
        """The comparison report of the runs selected in Runs (written in a worker, then opened)."""
        dirs = self.browser.selected_dirs()
        if not dirs:
            self.show_message("select one or more runs in Runs for a comparison report")
            return None
        return self.browser.write_report(dirs)

    def diff_selected(self):
        """The config diff of the runs selected in Runs (two or more)."""
        dirs = self.browser.selected_dirs()
        if len(dirs) < 2:
            self.show_message("select two or more runs in Runs to compare their configs")
            return None
        dialog = self.browser.diff_dialog(dirs)
        dialog.show()
        return dialog
