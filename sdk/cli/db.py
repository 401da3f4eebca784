"""The ``db`` commands (where the database is, migrate it, vacuum it, check it) and
``recover``; each works on the SQLite file or on the PostgreSQL database
``MILLSTREAM_DATABASE_URL`` names (``check`` on the SQLite file)."""

from __future__ import annotations

import argparse

from millstream._engine.exceptions import ObjectNotFound
from millstream._engine.settings import get_current_settings
from millstream._engine.store.sqlite import check_database, vacuum
from millstream.cli.output import EXIT_NOT_FOUND, EXIT_OK, as_json

__all__ = [
    "cmd_db_check",
    "cmd_db_migrate",
    "cmd_db_path",
    "cmd_db_vacuum",
    "cmd_recover",
]


def cmd_db_path(args: argparse.Namespace) -> int:
    """``db path``: the database file's path, or the database's URL (password masked)."""
    settings = get_current_settings()
    if settings.database_url:
        from millstream._engine.store.postgres import mask_url

        print(mask_url(settings.database_url))
    else:
        print(settings.database_path)
    return EXIT_OK


def cmd_db_migrate(args: argparse.Namespace) -> int:
    """``db migrate``: create the database or bring its schema up to this version's."""
    from millstream._engine.store import SCHEMA_VERSION, get_store

    store = get_store(get_current_settings().database_path)
    store.ensure_open_sync()
    print(f"Database {store.location} is at schema version {SCHEMA_VERSION}")
    return EXIT_OK


def cmd_db_vacuum(args: argparse.Namespace) -> int:
    """``db vacuum``: rewrite the database file compactly (PostgreSQL: ``VACUUM``)."""
    settings = get_current_settings()
    if settings.database_url:
        from millstream._engine.store.postgres import PostgresBackend

        backend = PostgresBackend(settings.database_url)
        backend.vacuum()
        print(f"Vacuumed {backend.location}")
        return EXIT_OK
    path = settings.database_path
    if not path.exists():
        raise ObjectNotFound(f"No database at {path}")
    before = path.stat().st_size
    vacuum(path)
    print(f"Vacuumed {path}: {before} -> {path.stat().st_size} bytes")
    return EXIT_OK


def cmd_db_check(args: argparse.Namespace) -> int:
    """``db check``: SQLite's integrity check of the file (read-only); exit 1 if damaged."""
    path = get_current_settings().database_path
    if not path.exists():
        raise ObjectNotFound(f"No database at {path}")
    problems = check_database(path)
    if problems == ["ok"]:
        print(f"{path}: ok")
        return EXIT_OK
    print(f"{path} is damaged:")
    for line in problems[:50]:
        print(f"  {line}")
    print(
        "Restore the file from a backup, or move it aside to start afresh (Millstream makes a "
        "new one); `sqlite3 <file> .recover` may salvage rows."
    )
    return EXIT_NOT_FOUND


def cmd_recover(args: argparse.Namespace) -> int:
    """``recover``: resume the flow runs whose process died (or mark them crashed)."""
    from millstream.recovery import recover

    report = recover(lease_seconds=args.lease)
    if args.json:
        print(as_json(report))
    else:
        print(
            f"Resumed {len(report.resumed)} flow run(s), marked {len(report.crashed)} crashed, "
            f"skipped {len(report.skipped)}"
        )
        for run_id in report.resumed:
            print(f"  resumed {run_id}")
        for run_id in report.crashed:
            print(f"  crashed {run_id} (cannot be resumed)")
    return EXIT_OK
