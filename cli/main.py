"""The ``wbg`` command: composes the command families and maps errors in one place.

Expected failures never print a traceback: library errors (``wbg.errors.WbgError``) and
usage errors become one ``Error: ...`` line (plus a hint line) on stderr, exit 1 for a
runtime error and 2 for bad usage or input.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

import typer

from wbg.cli import db as db_cmds
from wbg.cli import demo as demo_cmds
from wbg.cli import export as export_cmds
from wbg.cli import groups as group_cmds
from wbg.cli import record as record_cmds
from wbg.cli import runs as runs_cmds
from wbg.cli import table as table_cmds

app = typer.Typer(
    name="wbg",
    help="Group ML runs into experiments, locally: W&B-style groups in one SQLite file.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
record_cmds.register(app)
table_cmds.register(app)
export_cmds.register(app)
app.add_typer(group_cmds.app, name="group")
app.add_typer(runs_cmds.app, name="runs")
app.add_typer(db_cmds.app, name="db")
demo_cmds.register(app)


def _error(message: str, hint: str | None = None) -> None:
    sys.stderr.write(f"Error: {message}\n")
    if hint:
        sys.stderr.write(f"{hint}\n")


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``wbg`` console script."""
    from typer import _click

    from wbg.errors import WbgError

    if os.environ.get("_WBG_COMPLETE"):
        # add_completion=False keeps --install-completion out of the CLI (completions/
        # ships the scripts), which also skips registering typer's shell classes.
        from typer._completion_classes import completion_init

        completion_init()
    command = typer.main.get_command(app)
    try:
        result = command.main(
            args=list(argv) if argv is not None else None, prog_name="wbg", standalone_mode=False
        )
    except _click.exceptions.UsageError as exc:
        hint = None
        if exc.ctx is not None:
            hint = f"Try '{exc.ctx.command_path} --help' for help."
        _error(exc.format_message(), hint)
        sys.exit(exc.exit_code)
    except _click.exceptions.ClickException as exc:
        _error(exc.format_message())
        sys.exit(exc.exit_code)
    except typer.Abort:
        _error("aborted")
        sys.exit(1)
    except WbgError as exc:
        _error(exc.message, exc.hint)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:
        # The reader went away (`wbg runs list | head`): not an error worth a message.
        sys.stderr.close()
        sys.exit(0)
    sys.exit(result if isinstance(result, int) else 0)


if __name__ == "__main__":  # pragma: no cover
    main()
