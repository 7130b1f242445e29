"""The library's exceptions: each carries a message a user can act on.

The CLI catches ``WbgError`` in one place and prints ``Error: <message>`` (plus the hint,
when there is one) to stderr, exiting with ``exit_code``.
"""

from __future__ import annotations


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


# The wandb-shaped API raises these inside a user's script, with wandb's class names, so
# `except wandb.Error` (and `wandb.errors.UsageError`) keeps working after
# `import wbg as wandb`.


class Error(Exception):
    """Base of the errors the Python API raises in a script (wandb's ``wandb.Error``)."""


class UsageError(Error):
    """The API was called in a way it does not allow (wandb's ``UsageError``)."""


class ConfigError(Error):
    """A config value was changed without ``allow_val_change`` (wandb's ``ConfigError``)."""
