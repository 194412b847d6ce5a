"""Schema migrations: numbered plain `.sql` files in `migrations/`, applied in order,
each recorded in `schema_migrations` with a checksum.

Two processes starting at once are safe: the whole run holds a transaction-level
advisory lock, so the second waits and then finds nothing left to apply. A migration
already applied whose file has since changed stops start-up rather than leaving the
schema and the files silently different.
"""

import hashlib
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import structlog

log = structlog.get_logger(__name__)

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
# An arbitrary constant shared by every process of this system: "workbnch" in ASCII.
_ADVISORY_LOCK_KEY = 0x776F726B626E6368


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def available_migrations() -> list[Migration]:
    found = []
    for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
        number, _, name = path.stem.partition("_")
        found.append(Migration(int(number), name, path.read_text()))
    versions = [migration.version for migration in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"two migrations share a number in {MIGRATIONS_DIR}")
    return found


class MigrationDrift(RuntimeError):
    pass


async def apply_migrations(connection: asyncpg.Connection) -> list[str]:
    """Apply every pending migration; return the names applied (empty when current)."""
    applied_now: list[str] = []
    async with connection.transaction():
        await connection.execute("SELECT pg_advisory_xact_lock($1)", _ADVISORY_LOCK_KEY)
        await connection.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version integer PRIMARY KEY,
                   name text NOT NULL,
                   checksum text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        rows = await connection.fetch("SELECT version, checksum FROM schema_migrations")
        applied = {row["version"]: row["checksum"] for row in rows}
        for migration in available_migrations():
            if migration.version in applied:
                if applied[migration.version] != migration.checksum:
                    raise MigrationDrift(
                        f"migration {migration.version:04d}_{migration.name} was changed "
                        "after it was applied; add a new migration instead"
                    )
                continue
            await connection.execute(migration.sql)
            await connection.execute(
                "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                migration.version,
                migration.name,
                migration.checksum,
            )
            applied_now.append(f"{migration.version:04d}_{migration.name}")
    if applied_now:
        log.info("migrations_applied", migrations=applied_now)
    return applied_now


async def pending_migrations(connection: asyncpg.Connection) -> list[int]:
    """Versions not yet applied; every version when the table does not exist yet."""
    exists = await connection.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    applied = (
        {row["version"] for row in await connection.fetch("SELECT version FROM schema_migrations")}
        if exists
        else set()
    )
    return [m.version for m in available_migrations() if m.version not in applied]
