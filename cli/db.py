"""``wbg db``: where the database is, what it holds, and its schema version."""

from __future__ import annotations

import contextlib

import typer

from wbg.cli.options import DbOpt, open_db

app = typer.Typer(
    help="The database file: path, info, check, migrate.",
    no_args_is_help=True,
    rich_markup_mode=None,
)


@app.command("path")
def path(db: DbOpt = None) -> None:
    """Print the path of the database in use (--db > WBG_DB > settings > user data dir)."""
    from wbg.settings import resolve_db_path

    typer.echo(str(resolve_db_path(db)))


@app.command("info")
def info(db: DbOpt = None) -> None:
    """Print the database's path, size, schema version and row counts."""
    from wbg import db as dbmod

    conn, db_path = open_db(db, read_only=True)
    with contextlib.closing(conn):
        facts = dbmod.describe(conn)
        quick = dbmod.quick_check(conn)
    where = dbmod.describe_location(db_path)
    typer.echo(f"path            {db_path}")
    typer.echo(f"engine          {where['engine']}")
    typer.echo(f"size            {where['size']} bytes")
    if where["filesystem"]:
        typer.echo(f"filesystem      {where['filesystem']}")
    typer.echo(f"schema version  {facts['schema_version']} (this wbg: {facts['known_version']})")
    for table, count in facts["counts"].items():
        typer.echo(f"{table:<16}{count}")
    typer.echo(f"quick check     {'ok' if not quick else quick[0]}")
    if quick:
        raise typer.Exit(1)


@app.command("check")
def check(db: DbOpt = None) -> None:
    """Run SQLite's full integrity check on the database (read-only); exit 1 if damaged."""
    from wbg import db as dbmod
    from wbg.cli.render import safe_text
    from wbg.settings import resolve_db_path

    db_path = resolve_db_path(db)
    problems = dbmod.check_integrity(db_path)
    if not problems:
        typer.echo(f"{db_path}: ok")
        return
    typer.echo(f"{db_path}: damaged ({len(problems)} problem(s))")
    for problem in problems[:20]:
        typer.echo(f"  {safe_text(problem)}")
    typer.echo(
        f"recover what is readable: sqlite3 {db_path} .recover | sqlite3 recovered.db", err=True
    )
    raise typer.Exit(1)


@app.command("migrate")
def migrate(db: DbOpt = None) -> None:
    """Bring the database's schema up to date (opening it does this too)."""
    from wbg import db as dbmod
    from wbg.settings import resolve_db_path

    db_path = resolve_db_path(db)
    before, after = dbmod.migrate_file(db_path)
    if after == before:
        typer.echo(f"{db_path}: schema version {after}, up to date")
    else:
        typer.echo(f"{db_path}: migrated from schema version {before} to {after}")
