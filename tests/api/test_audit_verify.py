"""`GET /api/audit/verify` finds every way a good audit chain can be altered behind the
ledger's back, at the record where it breaks: each case below takes a sound chain of six
records, changes it directly in Postgres, and names the first broken record and why."""

from collections.abc import Callable
from uuid import uuid4

import asyncpg
import httpx
import pytest

from ledger.audit import record_audit
from ledger.audit_verify import verify_chain

VERIFY = "/api/audit/verify"
LENGTH = 6
# Every field a record's hash covers, each with a change to it (in record 3).
_CHANGE = "UPDATE audit_records SET {} WHERE tenant_id = $1 AND seq = 3"
FIELD_CHANGES = {
    "created_at": _CHANGE.format("created_at = created_at + interval '1 second'"),
    "actor": _CHANGE.format("actor = 'mallory'"),
    "action": _CHANGE.format("action = 'nothing_happened'"),
    "target_type": _CHANGE.format("target_type = 'thread'"),
    "target_id": _CHANGE.format("target_id = 'elsewhere'"),
    "category": _CHANGE.format("category = 'routine'"),
    "level": _CHANGE.format("level = 'critical'"),
    "ticket_id": _CHANGE.format("ticket_id = 'T-999'"),
    "agent_id": _CHANGE.format("agent_id = NULL"),
    "detail": _CHANGE.format("detail = detail || '{\"approved\": false}'"),
    "detail (one character)": _CHANGE.format(
        "detail = jsonb_set(detail, '{reason}', '\"reviewed.\"')"
    ),
}


async def _good_chain(pool: asyncpg.Pool, tenant: str) -> None:
    for index in range(1, LENGTH + 1):
        async with pool.acquire() as connection, connection.transaction():
            await record_audit(
                connection,
                tenant_id=tenant,
                actor=f"operator-{index}",
                action="approved",
                target_type="task",
                target_id=str(uuid4()),
                category="approval",
                ticket_id=f"T-{index}",
                agent_id=f"agent-{index}",
                detail={"reason": "reviewed", "index": index},
            )


async def _verify(http: httpx.AsyncClient, auth: Callable[..., dict[str, str]]) -> dict:
    response = await http.get(VERIFY, headers=auth("viewer"))
    assert response.status_code == 200, response.text
    return response.json()


async def test_an_untouched_chain_holds(http, auth, pool, tenant) -> None:
    await _good_chain(pool, tenant)
    result = await _verify(http, auth)
    assert result["intact"] is True and result["first_break"] is None
    assert (result["records_checked"], result["head_seq"]) == (LENGTH, LENGTH)


async def test_an_empty_chain_holds(http, auth) -> None:
    result = await _verify(http, auth)
    assert result == {
        "intact": True,
        "records_checked": 0,
        "head_seq": 0,
        "head_hash": None,
        "first_break": None,
    }


@pytest.mark.parametrize("field", FIELD_CHANGES)
async def test_a_changed_field_is_a_hash_mismatch_at_that_record(
    http, auth, pool, tenant, field
) -> None:
    await _good_chain(pool, tenant)
    await pool.execute(FIELD_CHANGES[field], tenant)
    result = await _verify(http, auth)
    assert result["intact"] is False
    assert (result["first_break"]["seq"], result["first_break"]["reason"]) == (
        3,
        "hash_mismatch",
    )
    assert result["records_checked"] == 2


# (what is done, the statements that do it, where verify must find it, and why)
CORRUPTIONS = [
    (
        "change the first record",
        ["UPDATE audit_records SET actor = 'mallory' WHERE tenant_id = $1 AND seq = 1"],
        1,
        "hash_mismatch",
    ),
    (
        "change the last record",
        ["UPDATE audit_records SET actor = 'mallory' WHERE tenant_id = $1 AND seq = 6"],
        6,
        "hash_mismatch",
    ),
    (
        "flip one character of a stored hash",
        [
            "UPDATE audit_records SET hash = translate(hash, '0123456789abcdef',"
            " '123456789abcdef0') WHERE tenant_id = $1 AND seq = 4"
        ],
        4,
        "hash_mismatch",
    ),
    (
        "point a record at another predecessor",
        [
            "UPDATE audit_records SET prev_hash = (SELECT hash FROM audit_records"
            " WHERE tenant_id = $1 AND seq = 1) WHERE tenant_id = $1 AND seq = 4"
        ],
        4,
        "broken_link",
    ),
    (
        "delete a record in the middle",
        ["DELETE FROM audit_records WHERE tenant_id = $1 AND seq = 3"],
        4,
        "sequence_gap",
    ),
    (
        "delete the first record",
        ["DELETE FROM audit_records WHERE tenant_id = $1 AND seq = 1"],
        2,
        "sequence_gap",
    ),
    (
        "delete the last record",
        ["DELETE FROM audit_records WHERE tenant_id = $1 AND seq = 6"],
        6,
        "sequence_gap",
    ),
    (
        "swap two records",
        [
            "UPDATE audit_records SET seq = 100 WHERE tenant_id = $1 AND seq = 3",
            "UPDATE audit_records SET seq = 3 WHERE tenant_id = $1 AND seq = 4",
            "UPDATE audit_records SET seq = 4 WHERE tenant_id = $1 AND seq = 100",
        ],
        3,
        "broken_link",
    ),
    (
        "insert a record with a made-up hash",
        [
            "UPDATE audit_records SET seq = seq + 100 WHERE tenant_id = $1 AND seq >= 4",
            "UPDATE audit_records SET seq = seq - 99 WHERE tenant_id = $1 AND seq >= 100",
            "INSERT INTO audit_records (tenant_id, seq, created_at, actor, action,"
            " target_type, target_id, category, level, detail, prev_hash, hash)"
            " SELECT tenant_id, 4, created_at, 'mallory', 'approved', 'task', 'x',"
            " 'approval', 'info', '{}', hash, repeat('a', 64)"
            " FROM audit_records WHERE tenant_id = $1 AND seq = 3",
        ],
        4,
        "hash_mismatch",
    ),
    (
        "insert a record hashed and linked as record_audit would",
        [
            "UPDATE audit_records SET seq = seq + 100 WHERE tenant_id = $1 AND seq >= 4",
            "UPDATE audit_records SET seq = seq - 99 WHERE tenant_id = $1 AND seq >= 100",
            "INSERT INTO audit_records (tenant_id, seq, created_at, actor, action,"
            " target_type, target_id, category, level, detail, prev_hash, hash)"
            " SELECT tenant_id, 4, created_at, 'mallory', 'approved', 'task', 'x',"
            " 'approval', 'info', '{}', hash, audit_record_hash(tenant_id, 4, hash,"
            " created_at, 'mallory', 'approved', 'task', 'x', 'approval', 'info', NULL,"
            " NULL, '{}') FROM audit_records WHERE tenant_id = $1 AND seq = 3",
        ],
        5,
        "broken_link",
    ),
    (
        "rewrite the last record and its hash as record_audit would",
        [
            "UPDATE audit_records SET actor = 'mallory' WHERE tenant_id = $1 AND seq = 6",
            "UPDATE audit_records SET hash = audit_record_hash(tenant_id, seq, prev_hash,"
            " created_at, actor, action, target_type, target_id, category, level, ticket_id,"
            " agent_id, detail) WHERE tenant_id = $1 AND seq = 6",
        ],
        6,
        "head_mismatch",
    ),
    (
        "append a record past the head, hashed and linked as record_audit would",
        [
            "INSERT INTO audit_records (tenant_id, seq, created_at, actor, action,"
            " target_type, target_id, category, level, detail, prev_hash, hash)"
            " SELECT tenant_id, 7, created_at, 'mallory', 'approved', 'task', 'x',"
            " 'approval', 'info', '{}', hash, audit_record_hash(tenant_id, 7, hash,"
            " created_at, 'mallory', 'approved', 'task', 'x', 'approval', 'info', NULL,"
            " NULL, '{}') FROM audit_records WHERE tenant_id = $1 AND seq = 6",
        ],
        7,
        "head_mismatch",
    ),
]


@pytest.mark.parametrize(
    ("statements", "seq", "reason"),
    [case[1:] for case in CORRUPTIONS],
    ids=[case[0] for case in CORRUPTIONS],
)
async def test_an_altered_trail_breaks_where_it_was_altered(
    http, auth, pool, tenant, statements, seq, reason
) -> None:
    await _good_chain(pool, tenant)
    assert (await _verify(http, auth))["intact"] is True
    async with pool.acquire() as connection, connection.transaction():
        for statement in statements:
            await connection.execute(statement, tenant)
    result = await _verify(http, auth)
    assert result["intact"] is False
    assert (result["first_break"]["seq"], result["first_break"]["reason"]) == (seq, reason)
    assert result["first_break"]["message"]


async def test_a_chain_is_read_in_chunks_without_losing_its_place(pool, tenant) -> None:
    await _good_chain(pool, tenant)
    async with pool.acquire() as connection:
        whole = await verify_chain(connection, tenant, chunk=2)
        await connection.execute(
            "UPDATE audit_records SET actor = 'mallory' WHERE tenant_id = $1 AND seq = 5", tenant
        )
        broken = await verify_chain(connection, tenant, chunk=2)
    assert (whole.intact, whole.records_checked) == (True, LENGTH)
    assert broken.first_break is not None
    assert (broken.first_break.seq, broken.records_checked) == (5, 4)


async def test_another_tenants_chain_is_not_checked(http, auth, pool, tenant) -> None:
    await _good_chain(pool, tenant)
    await pool.execute("DELETE FROM audit_records WHERE tenant_id = $1 AND seq = 2", tenant)
    response = await http.get(VERIFY, headers=auth("viewer", tenant_id=f"other-{tenant}"))
    assert response.json()["intact"] is True and response.json()["head_seq"] == 0
