"""The ``wbg`` command: composes the command families and maps errors in one place.

Expected failures never print a traceback: library errors (``wbg.errors.WbgError``) and
usage errors become one ``Error: ...`` line (plus a hint line) on stderr, exit 1 for a
runtime error and 2 for bad usage or input.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Annotated, Any

import typer

from wbg.cli import completion as completion_cmds
from wbg.cli import db as db_cmds
from wbg.cli import demo as demo_cmds
from wbg.cli import export as export_cmds
from wbg.cli import groups as group_cmds
from wbg.cli import interop as interop_cmds
from wbg.cli import plot as plot_cmds
from wbg.cli import record as record_cmds
from wbg.cli import runs as runs_cmds
from wbg.cli import table as table_cmds
from wbg.cli import ui as ui_cmds


def _print_version(value: bool) -> None:
    if value:
        from wbg import __version__

        typer.echo(f"wbg {__version__}")
        raise typer.Exit()


def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            "-V",
            help="Print wbg's version and exit.",
            is_eager=True,
            callback=_print_version,
        ),
    ] = False,
) -> None:
    pass


def _new_app() -> typer.Typer:
    app = typer.Typer(
        name="wbg",
        help="Group ML runs into experiments, locally: W&B-style groups in one SQLite file.",
        no_args_is_help=True,
        add_completion=False,
        rich_markup_mode=None,
        pretty_exceptions_enable=False,
        # color=True: click.echo would otherwise strip escape sequences from output to a
        # pipe, changing stored text in csv/json; human formats escape them (render.py).
        context_settings={"help_option_names": ["-h", "--help"], "color": True},
    )
    app.callback()(_root)
    return app


def _whole_descriptions(command: Any) -> None:  # typer 0.28's own (vendored) click classes
    """Command lists in --help show each command's first paragraph whole (wrapped), not
    cut at the terminal's width with "..." as click does by default."""
    for sub in getattr(command, "commands", {}).values():
        if sub.short_help is None and sub.help:
            sub.short_help = " ".join(sub.help.strip().split("\n\n")[0].split())
        _whole_descriptions(sub)


app = _new_app()
# Registration order is the order `wbg --help` lists the commands in.
record_cmds.register(app)  # run, new-group, log
table_cmds.register(app)
app.add_typer(group_cmds.app, name="group")
app.add_typer(runs_cmds.app, name="runs")
plot_cmds.register(app)
export_cmds.register(app)
ui_cmds.register(app)
interop_cmds.register(app, export_cmds.app)  # import wandb, export wandb, merge
app.add_typer(db_cmds.app, name="db")
demo_cmds.register(app)
completion_cmds.register(app)


def _error(message: str, hint: str | None = None) -> None:
    from wbg.cli.render import safe_text  # messages may quote stored names

    sys.stderr.write(f"Error: {safe_text(message)}\n")
    if hint:
        sys.stderr.write(f"{safe_text(hint)}\n")


def _db_argument(args: Sequence[str]) -> str:
    """The database this invocation uses (for an error message): --db, else the usual."""
    from wbg.settings import resolve_db_path

    for index, arg in enumerate(args):
        if arg == "--db" and index + 1 < len(args):
            return str(resolve_db_path(args[index + 1]))
        if arg.startswith("--db="):
            return str(resolve_db_path(arg[5:]))
    return str(resolve_db_path(None))


def build_command(argv: Sequence[str]) -> typer.core.TyperGroup:
    """The click group for this invocation, building only the command ``argv`` names.

    typer turns every command's signature into click parameters when the group is built;
    for a command typed at a prompt (``wbg new-group``, ``wbg run``) building only the one
    being run saves a fifth of the start-up time. Help and completion get everything.
    """
    name = next((arg for arg in argv if not arg.startswith("-")), None)
    if name is not None and not os.environ.get("_WBG_COMPLETE"):
        commands = [info for info in app.registered_commands if info.name == name]
        groups = [info for info in app.registered_groups if info.name == name]
        if commands or groups:
            lean = _new_app()
            lean.registered_commands = commands
            lean.registered_groups = groups
            group = typer.main.get_group(lean)
            _whole_descriptions(group)
            return group
    group = typer.main.get_group(app)
    _whole_descriptions(group)
    return group


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``wbg`` console script."""
    from typer import _click

    from wbg.errors import WbgError

    if os.environ.get("_WBG_COMPLETE"):
        # add_completion=False keeps --install-completion out of the CLI (completions/
        # ships the scripts), which also skips registering typer's shell classes.
        from typer._completion_classes import completion_init

        completion_init()
    args = list(sys.argv[1:] if argv is None else argv)
    command = build_command(args)
    try:
        result = command.main(args=args, prog_name="wbg", standalone_mode=False)
    except _click.exceptions.NoArgsIsHelpError as exc:
        # bare `wbg` (or `wbg runs`): the help, as asked for, not an error
        typer.echo(exc.ctx.get_help())
        sys.exit(0)
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
        # The reader went away (`wbg runs list | head`): no message, and no second error
        # when Python flushes stdout at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(1)
    except Exception as exc:
        sqlite3 = sys.modules.get("sqlite3")
        if sqlite3 is None or not isinstance(exc, sqlite3.DatabaseError):
            raise
        # Damage found while reading, after the file opened fine.
        from wbg.db import reading_error

        error = reading_error(_db_argument(args), str(exc))
        _error(error.message, error.hint)
        sys.exit(1)
    sys.exit(result if isinstance(result, int) else 0)


if __name__ == "__main__":  # pragma: no cover
    main()
