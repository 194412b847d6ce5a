"""Appending to the audit chain: records commit with the change they describe, take
consecutive numbers under concurrency, link to the record before, and never hold a
secret; one tenant's open append does not hold up another's."""

import asyncio
import itertools
from uuid import uuid4

import asyncpg
import pytest

from ledger.audit import AuditRecord, record_audit

GENESIS = "0" * 64


def _tenant() -> str:
    return f"tenant-{uuid4().hex[:10]}"


async def _append(pool: asyncpg.Pool, tenant: str, **fields: object) -> AuditRecord:
    async with pool.acquire() as connection, connection.transaction():
        return await record_audit(
            connection,
            tenant_id=tenant,
            actor=str(fields.pop("actor", "alice")),
            action=str(fields.pop("action", "approved")),
            target_type="task",
            target_id=str(fields.pop("target_id", uuid4())),
            category="approval",
            **fields,  # type: ignore[arg-type]
        )


async def test_records_chain_from_genesis(pool: asyncpg.Pool) -> None:
    tenant = _tenant()
    first = await _append(pool, tenant)
    second = await _append(pool, tenant, level="warning", ticket_id="T-1", agent_id="a-1")
    assert (first.seq, first.prev_hash) == (1, GENESIS)
    assert (second.seq, second.prev_hash) == (2, first.hash)
    assert second.created_at > first.created_at
    assert (second.level, second.ticket_id, second.agent_id) == ("warning", "T-1", "a-1")
    async with pool.acquire() as connection:
        recomputed = await connection.fetchval(
            "SELECT audit_record_hash(tenant_id, seq, prev_hash, created_at, actor, action,"
            " target_type, target_id, category, level, ticket_id, agent_id, detail)"
            " FROM audit_records WHERE tenant_id = $1 AND seq = 2",
            tenant,
        )
    assert recomputed == second.hash


async def test_record_rolls_back_with_its_transaction(pool: asyncpg.Pool) -> None:
    tenant = _tenant()
    await _append(pool, tenant)
    with pytest.raises(RuntimeError):
        async with pool.acquire() as connection, connection.transaction():
            await record_audit(
                connection,
                tenant_id=tenant,
                actor="bob",
                action="rejected",
                target_type="task",
                target_id="t",
                category="approval",
            )
            raise RuntimeError("the change failed")
    after = await _append(pool, tenant)
    assert after.seq == 2  # the rolled-back record took no number


async def test_concurrent_appends_in_a_tenant_take_consecutive_numbers(
    pool: asyncpg.Pool,
) -> None:
    tenant = _tenant()
    records = await asyncio.gather(*(_append(pool, tenant, actor=f"op{i}") for i in range(8)))
    by_seq = sorted(records, key=lambda record: record.seq)
    assert [record.seq for record in by_seq] == list(range(1, 9))
    for before, record in itertools.pairwise(by_seq):
        assert record.prev_hash == before.hash
        assert record.created_at > before.created_at


async def test_an_open_append_in_one_tenant_does_not_hold_up_another(
    pool: asyncpg.Pool,
) -> None:
    busy, other = _tenant(), _tenant()
    async with pool.acquire() as connection, connection.transaction():
        await record_audit(
            connection,
            tenant_id=busy,
            actor="alice",
            action="approved",
            target_type="task",
            target_id="t",
            category="approval",
        )
        # Still holding `busy`'s chain head: another tenant appends all the same.
        record = await asyncio.wait_for(_append(pool, other), timeout=10)
    assert record.seq == 1


async def test_detail_is_redacted_before_it_is_hashed_and_stored(pool: asyncpg.Pool) -> None:
    tenant = _tenant()
    record = await _append(
        pool,
        tenant,
        target_id="postgres://admin:hunter2-secret@db/prod",
        detail={"api_key": "sk-live-1234567890abcdef", "note": "fine"},
    )
    assert record.detail["note"] == "fine"
    assert "sk-live" not in str(record.detail) and "hunter2" not in record.target_id
    async with pool.acquire() as connection:
        stored = await connection.fetchval(
            "SELECT detail::text || target_id FROM audit_records WHERE tenant_id = $1", tenant
        )
    assert "sk-live" not in stored and "hunter2" not in stored


async def test_an_unknown_level_is_refused(pool: asyncpg.Pool) -> None:
    with pytest.raises(ValueError, match="audit level"):
        await _append(pool, _tenant(), level="loud")
