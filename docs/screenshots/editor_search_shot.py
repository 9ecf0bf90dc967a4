"""Grab a PNG of the experiment editor with a field search on:
``python docs/screenshots/editor_search_shot.py OUT.png [QUERY]`` (offscreen; default query 'solarize')."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from tests.workbench.conftest import quick_small
from workbench import settings, workers
from workbench.app import application, settle


def main(out: Path, query: str = "solarize") -> None:
    """Write the editor, the quick preset loaded and ``query`` typed in its search box, to ``out``."""
    settings.use_ini_file(Path(tempfile.mkdtemp()) / "settings.ini")
    app = application()
    workers.set_synchronous(True)
    from workbench.editor import ExperimentEditor
    editor = ExperimentEditor()
    editor.model.set_data(quick_small())
    editor.resize(440, 760)
    editor.show()
    settle(app, 0.5)
    editor.search.edit.setText(query)
    settle(app, 0.5)
    out.parent.mkdir(parents=True, exist_ok=True)
    editor.grab().save(str(out))


if __name__ == "__main__":
    main(Path(sys.argv[1]), *sys.argv[2:3])
