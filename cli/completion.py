"""``wbg completion SHELL``: the shell completion script, to install the usual way."""

from __future__ import annotations

from enum import Enum
from typing import Annotated

import typer

HELP = """Print the completion script for SHELL (bash, zsh or fish); install it with:

\b
  bash: wbg completion bash > ~/.local/share/bash-completion/completions/wbg
  zsh:  wbg completion zsh > ~/.wbg.zsh   (and `source ~/.wbg.zsh` in ~/.zshrc)
  fish: wbg completion fish > ~/.config/fish/completions/wbg.fish

The script calls back into wbg, so group names, job types, keys and metrics complete
from the database in use, and it does not change when the data does.
"""


class Shell(str, Enum):
    bash = "bash"
    zsh = "zsh"
    fish = "fish"


def register(app: typer.Typer) -> None:
    app.command("completion", help=HELP, no_args_is_help=True)(completion)


def completion(
    shell: Annotated[Shell, typer.Argument(metavar="SHELL", help="bash, zsh or fish.")],
) -> None:
    from typer.completion import completion_init, shell_complete

    from wbg.cli.main import build_command

    completion_init()  # typer's classes: the same script as completions/wbg.SHELL
    shell_complete(build_command([]), {}, "wbg", "_WBG_COMPLETE", f"source_{shell.value}")
