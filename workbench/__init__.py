"""SSL Workbench GUI (PySide6 + pyqtgraph): configure, train, watch and compare runs.

The app talks to training only through the trainer process protocol (docs/ARCHITECTURE.md) and reads run
directories through ``backend``'s public functions. Entry point: ``workbench.app.main(argv)``.
"""
