"""Where settings come from: one function per decision.

Precedence for every setting with a flag and a variable (docs/design.md, "Storage"):
explicit argument > environment variable > settings file > default. ``resolve`` is that
rule; the database path and the project have their own functions because their defaults
are computed.
"""

from __future__ import annotations

import functools
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wbg.errors import InvalidInput

SETTINGS_FILE = "wbg.toml"
PYPROJECT = "pyproject.toml"


@dataclass(frozen=True)
class Settings:
    """Values read from the nearest settings file (empty when there is none)."""

    path: Path | None = None
    values: dict[str, Any] = field(default_factory=dict)

    def get(self, key: str) -> Any:
        return self.values.get(key)


# Parsed settings files by path: every ``wbg.init`` looks up its settings, and a sweep's
# thousands of runs would otherwise parse the project's pyproject.toml once each (half the
# cost of a short run). A file is read again when its stat differs, or when it was changed
# within two seconds of being read (a rewrite within the file system's time-stamp tick
# could keep the same stat); then its bytes say whether it changed.
@dataclass(frozen=True)
class _Parsed:
    stat: tuple[int, int, int, int]  # device, inode, size, mtime (ns) when it was read
    read_at: float
    raw: bytes
    data: dict[str, Any]


_parsed: dict[str, _Parsed] = {}


def _load_toml(path: str) -> dict[str, Any]:
    """The parsed file (do not change it: it is shared until the file changes)."""
    from wbg.values import toml

    tomllib = toml()
    try:
        st = os.stat(path)
        stat = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        known = _parsed.get(path)
        if known is not None and known.stat == stat and known.read_at - st.st_mtime > 2.0:
            return known.data
        read_at = time.time()
        with open(path, "rb") as handle:
            raw = handle.read()
        if known is not None and known.raw == raw:
            data = known.data
        else:
            data = tomllib.loads(raw.decode("utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise InvalidInput(f"cannot read settings file {path}: {exc}") from None
    _parsed[path] = _Parsed(stat, read_at, raw, data)
    return data


def find_settings(start: Path | None = None) -> Settings:
    """The nearest ``wbg.toml`` or ``pyproject.toml`` with ``[tool.wbg]``, searched upward."""
    # Strings and os.path, not pathlib: every wbg.init walks this (a sweep: thousands).
    # getcwd() is already absolute and free of symbolic links
    folder = os.getcwd() if start is None else os.path.realpath(start)
    while True:
        candidate = os.path.join(folder, SETTINGS_FILE)
        if os.path.isfile(candidate):
            return Settings(Path(candidate), _load_toml(candidate))
        candidate = os.path.join(folder, PYPROJECT)
        if os.path.isfile(candidate):
            section = _load_toml(candidate).get("tool", {}).get("wbg")
            if isinstance(section, dict):
                return Settings(Path(candidate), section)
        parent = os.path.dirname(folder)
        if parent == folder:
            return Settings()
        folder = parent


def environ(name: str) -> str | None:
    """``os.environ.get(name)``, for the variables every ``wbg.init`` reads (about 15).

    ``os.environ.get`` of a variable that is not set goes through ``Mapping.get``, the
    key's encoding and a raised KeyError: about 7,000 instructions, a tenth of a short
    run's cost in all. On POSIX, ``os.environ`` keeps every value in the bytes dict
    ``_data`` that each change goes through: a lookup there is what ``os.environ`` does
    itself, without the layers. Anywhere else (or an ``os.environ`` replaced by a test)
    the public way is taken.
    """
    data = getattr(os.environ, "_data", None)
    if os.name != "posix" or not isinstance(data, dict):
        return os.environ.get(name)
    value = data.get(name.encode("ascii"))  # the names are ASCII: the same key
    return None if value is None else os.fsdecode(value)


def resolve(flag: Any, env_var: str | None, settings: Settings | None, key: str) -> Any:
    """The precedence rule: flag > environment variable > settings file > None.

    An empty environment variable counts as unset (as W&B treats it).
    """
    if flag is not None:
        return flag
    if env_var:
        value = environ(env_var)
        if value:
            return value
    if settings is not None:
        return settings.get(key)
    return None


def user_data_dir() -> Path:
    """The per-user data directory for wbg (XDG on Linux, the usual places elsewhere)."""
    if sys.platform == "win32":  # pragma: no cover
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":  # pragma: no cover
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "wbg"


def resolve_db_path(flag: str | os.PathLike[str] | None = None) -> Path:
    """The database path: ``--db`` > ``WBG_DB`` > settings ``db`` > the user data dir.

    A ``postgresql://`` URL in any of them is a ``wbg.engine.ServerUrl`` instead.
    """
    from wbg.engine import ServerUrl, is_server_url

    if flag:
        return _location(flag if isinstance(flag, str) else os.fspath(flag))
    env = environ("WBG_DB")
    if env:
        return _location(env)
    settings = find_settings()
    configured = settings.get("db")
    if is_server_url(configured):
        return ServerUrl(str(configured))
    if configured and settings.path is not None:
        return (settings.path.parent / Path(str(configured)).expanduser()).resolve()
    return user_data_dir() / "runs.db"


def _location(text: str) -> Path:
    """A --db / WBG_DB value as a path or a ``ServerUrl``."""
    if text.startswith("~"):  # expanded each time: $HOME may change
        return Path(text).expanduser()
    return _given_location(text)


@functools.lru_cache(maxsize=16)
def _given_location(text: str) -> Path:
    # remembered: every wbg.init of a sweep asks again
    from wbg.engine import ServerUrl, is_server_url

    return ServerUrl(text) if is_server_url(text) else Path(text)


def resolve_project(flag: str | None = None) -> str:
    """The project: ``--project`` > ``WANDB_PROJECT`` > settings ``project`` > cwd name."""
    settings = None if flag or environ("WANDB_PROJECT") else find_settings()
    value = resolve(flag, "WANDB_PROJECT", settings, "project")
    return str(value) if value else (Path.cwd().name or "default")


def view_project() -> tuple[str | None, str | None]:
    """The project the reading views show when none is asked for: ``WANDB_PROJECT``, else
    the settings file's ``project`` (what the user is working on), else None (every
    project); and where it came from, for the note that says so."""
    env = os.environ.get("WANDB_PROJECT")
    if env:
        return env, "$WANDB_PROJECT"
    settings = find_settings()
    value = settings.get("project")
    if value:
        return str(value), str(settings.path.name if settings.path else "settings")
    return None, None


def resolve_grouping(
    project: str | None, group: str | None, job_type: str | None
) -> tuple[str, str | None, str | None]:
    """Project, group and job_type of a new run: flag > W&B variable > settings > default.

    The one place ``wbg run`` and ``wbg.init`` take them from; the names are validated.
    """
    from wbg.values import check_group, check_job_type

    group = resolve(group, "WANDB_RUN_GROUP", None, "group")
    job_type = resolve(job_type, "WANDB_JOB_TYPE", None, "job_type")
    check_group(group)
    check_job_type(job_type)
    return resolve_project(project), group, job_type
