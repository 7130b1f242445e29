"""Cheap end-to-end checks of the entry point and error mapping."""

from __future__ import annotations

from helpers import no_database

# Parsing and help: no database is opened.
pytestmark = no_database


def test_help_lists_commands(cli):
    result = cli("--help")
    assert result.exit_code == 0, result.output
    for command in ("run", "new-group", "log", "runs", "db", "demo", "plot"):
        assert command in result.stdout


def test_usage_error_is_one_line_and_exit_2(cli):
    result = cli("runs", "list", "--bogus")
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert lines[0] == "Error: No such option: --bogus"
    assert len(lines) == 2 and lines[1].startswith("Try 'wbg runs list --help'")
