"""Migration 0013: IT requests registered before tickets existed become tickets."""

import asyncpg

from ledger import migrate
from ledger.migrate import apply_migrations


async def test_existing_it_requests_become_tickets(make_database, tmp_path, monkeypatch) -> None:
    connection = await asyncpg.connect(make_database())
    try:
        for path in migrate.MIGRATIONS_DIR.glob("*.sql"):
            if int(path.name[:4]) < 13:
                (tmp_path / path.name).write_text(path.read_text())
        monkeypatch.setattr(migrate, "MIGRATIONS_DIR", tmp_path)
        await apply_migrations(connection)
        await connection.execute(
            "INSERT INTO it_requests (tenant_id, request_number, title, description, "
            "requester, created_by) VALUES ('t1', 'ITR-7', 'Disk full', 'db01', 'bob', 'alice')"
        )
        monkeypatch.setattr(
            migrate, "MIGRATIONS_DIR", migrate.Path(migrate.__file__).parent / "migrations"
        )
        assert "0013_tickets" in await apply_migrations(connection)
        ticket = await connection.fetchrow("SELECT * FROM tickets WHERE tenant_id = 't1'")
        assert (ticket["title"], ticket["ticket_class"], ticket["status"]) == (
            "Disk full",
            "UserRequest",
            "new",
        )
        assert ticket["it_request_number"] == "ITR-7"
        assert ticket["details"] is not None
    finally:
        await connection.close()
