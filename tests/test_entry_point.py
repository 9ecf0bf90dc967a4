"""The ``sslwb`` entry point lives above the engine and the GUI and dispatches to both."""

from __future__ import annotations

import pytest

from sslwb import cli


def test_help_lists_the_gui_and_the_engine_commands(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for command in ("gui", "train", "eval", "inspect", "export"):
        assert command in out


def test_gui_goes_to_the_app_with_its_own_options(monkeypatch):
    import workbench.app

    seen = []
    monkeypatch.setattr(workbench.app, "main", lambda argv: seen.append(argv) or 7)
    assert cli.main(["gui", "--workspace", "ws", "--run-dir", "r"]) == 7
    assert seen == [["--workspace", "ws", "--run-dir", "r"]]


def test_engine_commands_go_to_the_engine(monkeypatch):
    import backend.cli

    seen = []
    monkeypatch.setattr(backend.cli, "main", lambda argv, front_commands=(): seen.append(argv) or 3)
    assert cli.main(["eval", "--run-dir", "x"]) == 3
    assert seen == [["eval", "--run-dir", "x"]]


def test_the_engine_parser_knows_no_gui_command():
    import backend.cli

    with pytest.raises(SystemExit):
        backend.cli.main(["gui"])
