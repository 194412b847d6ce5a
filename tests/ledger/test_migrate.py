"""Migrations: applied once, in order, recorded; concurrent starters are safe; an edited
migration stops start-up."""

import asyncio

import asyncpg
import pytest

from ledger import migrate
from ledger.migrate import (
    MigrationDrift,
    apply_migrations,
    available_migrations,
    pending_migrations,
)


async def test_fresh_database_gets_every_migration_once(make_database) -> None:
    connection = await asyncpg.connect(make_database())
    try:
        assert await pending_migrations(connection) == [m.version for m in available_migrations()]
        applied = await apply_migrations(connection)
        assert applied == [f"{m.version:04d}_{m.name}" for m in available_migrations()]
        assert await apply_migrations(connection) == []
        assert await pending_migrations(connection) == []
        tables = {
            row["tablename"]
            for row in await connection.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            )
        }
        assert {
            "tasks",
            "runs",
            "trace_events",
            "artifacts",
            "it_requests",
            "schema_migrations",
        } <= tables
    finally:
        await connection.close()


async def test_two_processes_starting_at_once_apply_once(make_database) -> None:
    url = make_database()
    connections = [await asyncpg.connect(url) for _ in range(4)]
    try:
        results = await asyncio.gather(*(apply_migrations(c) for c in connections))
        assert sorted(len(result) for result in results) == [0, 0, 0, len(available_migrations())]
        count = await connections[0].fetchval("SELECT count(*) FROM schema_migrations")
        assert count == len(available_migrations())
    finally:
        for connection in connections:
            await connection.close()


async def test_edited_migration_is_refused(make_database, tmp_path, monkeypatch) -> None:
    connection = await asyncpg.connect(make_database())
    try:
        await apply_migrations(connection)
        for path in migrate.MIGRATIONS_DIR.glob("*.sql"):
            (tmp_path / path.name).write_text(path.read_text() + "\n-- edited\n")
        monkeypatch.setattr(migrate, "MIGRATIONS_DIR", tmp_path)
        with pytest.raises(MigrationDrift, match="was changed after it was applied"):
            await apply_migrations(connection)
    finally:
        await connection.close()
