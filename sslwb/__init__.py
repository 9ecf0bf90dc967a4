"""The ``sslwb`` command: the one entry point above the engine (``backend``) and the GUI
(``workbench``). ``sslwb gui`` starts the desktop app; every other command is the engine's."""
