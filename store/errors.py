"""The library's exceptions: each carries a message a user can act on.

The CLI catches ``WbgError`` in one place and prints ``Error: <message>`` (plus the hint,
when there is one) to stderr, exiting with ``exit_code``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence


class WbgError(Exception):
    """Base of every error wbg reports to a user (runtime error, exit 1)."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class InvalidInput(WbgError):
    """Bad input from the user: a value, a key, a file (exit 2)."""

    exit_code = 2


class InvalidName(InvalidInput):
    """A group, job_type, tag or config key that breaks the naming rules."""


class UnknownRun(InvalidInput):
    """A run id that is not in the database."""


class DatabaseError(WbgError):
    """The database file cannot be used (missing directory, read-only, not SQLite...)."""


class DatabaseUnavailable(DatabaseError):
    """The database cannot be written for now: disk full, I/O error, lock held elsewhere."""


class NoDatabase(InvalidInput):
    """A database path to read from where there is no file (a mistyped --db, exit 2)."""


class NotADatabase(DatabaseError):
    """The path holds a file that is not a SQLite database."""


class NewerSchema(DatabaseError):
    """The database was written by a newer wbg than this one."""


class MissingExtra(WbgError):
    """A feature needs an optional dependency that is not installed (the hint names it)."""


def close_matches(
    name: str, candidates: Iterable[str], n: int = 3, cutoff: float = 0.6
) -> list[str]:
    """Up to ``n`` known names close to ``name`` (a typo), best first."""
    import difflib

    return difflib.get_close_matches(name, list(dict.fromkeys(candidates)), n=n, cutoff=cutoff)


def did_you_mean(close: Sequence[str], then: str = "") -> str:
    """The one way every hint offers close matches: ``did you mean: a, b? THEN`` (``THEN``
    alone when there are none)."""
    if not close:
        return then
    asked = f"did you mean: {', '.join(close)}?"
    return f"{asked} {then}" if then else asked


# The wandb-shaped API raises these inside a user's script, with wandb's class names, so
# `except wandb.Error` (and `wandb.errors.UsageError`) keeps working after
# `import wbg as wandb`.


class Error(Exception):
    """Base of the errors the Python API raises in a script (wandb's ``wandb.Error``)."""


class UsageError(Error):
    """The API was called in a way it does not allow (wandb's ``UsageError``)."""


class ConfigError(Error):
    """A config value was changed without ``allow_val_change`` (wandb's ``ConfigError``)."""
