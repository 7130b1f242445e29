"""A throwaway PostgreSQL server for tests and benchmarks (README "On a cluster").

``initdb`` into a temporary directory and ``pg_ctl start`` on a free loopback port, as the
unprivileged ``postgres`` user when running as root (PostgreSQL refuses to run as root).
Debian's ``postgresql`` package provides the binaries (``.ci/run`` installs it).
"""

from __future__ import annotations

import contextlib
import functools
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def server_bin() -> Path | None:
    """The directory holding initdb and pg_ctl, or None when PostgreSQL is not installed."""
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(versions[-1]).parent if versions else None


def _free_port() -> int:
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _as_server_user() -> dict:
    if os.geteuid() != 0:
        return {}
    entry = pwd.getpwnam("postgres")
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


@contextlib.contextmanager
def running_server(max_connections: int = 200) -> Iterator[str]:
    """Start a server; yield the base URL ``postgresql://wbg@127.0.0.1:PORT``; stop it."""
    bindir = server_bin()
    if bindir is None:
        raise RuntimeError("PostgreSQL server binaries not found (apt-get install postgresql)")
    root = Path(tempfile.mkdtemp(prefix="wbg-pg-"))
    data = root / "data"
    owner = _as_server_user()
    if owner:
        os.chown(root, owner["user"], owner["group"])
    port = _free_port()
    run = {"check": True, "stdout": subprocess.DEVNULL, "stderr": subprocess.PIPE, **owner}
    try:
        subprocess.run(
            [bindir / "initdb", "-D", data, "-U", "wbg", "--auth=trust", "-E", "UTF8", "--no-sync"],
            **run,
        )
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={root} "
            f"-c max_connections={max_connections} -c fsync=off -c shared_buffers=64MB"
        )
        subprocess.run(
            [bindir / "pg_ctl", "-D", data, "-l", root / "log", "-o", options, "-w", "start"],
            **run,
        )
        yield f"postgresql://wbg@127.0.0.1:{port}"
    finally:
        with contextlib.suppress(Exception):
            subprocess.run(
                [bindir / "pg_ctl", "-D", data, "-m", "immediate", "-w", "stop"],
                **{**run, "check": False},
            )
        shutil.rmtree(root, ignore_errors=True)


@functools.cache
def _admin(base_url: str) -> Any:
    """One connection to the server's ``postgres`` database per process (for creating and
    dropping the tests' databases)."""
    import psycopg

    return psycopg.connect(base_url + "/postgres", autocommit=True)


def create_database(base_url: str, name: str) -> str:
    """A new empty database on the server; its URL."""
    conn = _admin(base_url)
    conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
    # Copying the template's files is faster than the WAL-logged copy (PostgreSQL 15+).
    fast = " STRATEGY FILE_COPY" if conn.info.server_version >= 150000 else ""
    conn.execute(f'CREATE DATABASE "{name}"{fast}')
    return f"{base_url}/{name}"


def drop_database(base_url: str, name: str) -> None:
    """Drop a database, ending the sessions still connected to it (a process a test left)."""
    _admin(base_url).execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
