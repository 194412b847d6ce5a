"""The audit feed's pages stay index lookups however long the trail grows: EXPLAIN of
the feed's own statements, planned for their arguments as the feed's transaction asks,
over enough rows that a scan would be chosen if it were cheaper. Each filter reads its
own index, newest first, and sorts nothing; the trace events' page reads the tenant-wide
index from the cursor on."""

import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg
import pytest

from ledger.audit_feed import FeedFilters
from ledger.migrate import apply_migrations
from ledger.sql import query

ROWS = 20_000
TENANT = "plans-main"
PAGE = 50


@pytest.fixture(scope="module")
async def connection(make_database: Callable[[], str]) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(make_database())
    await apply_migrations(connection)
    # Half the records in the tenant queried; actors, categories, levels and tickets
    # mixed through the whole history. Plans do not read hashes: any will do.
    await connection.execute(
        """
        INSERT INTO audit_records (tenant_id, seq, created_at, actor, action, target_type,
                                   target_id, category, level, ticket_id, agent_id, detail,
                                   prev_hash, hash)
        SELECT (ARRAY[$1, 'plans-b'])[1 + n % 2], n, now() - n * interval '1 second',
               'operator-' || n % 40, (ARRAY['approved', 'rejected', 'cancelled'])[1 + n % 3],
               'task', 'task-' || n, (ARRAY['approval', 'task', 'spawn', 'policy'])[1 + n % 4],
               (ARRAY['info', 'info', 'info', 'warning'])[1 + n % 4],
               CASE WHEN n % 3 = 0 THEN 'T-' || n % 5 END,
               CASE WHEN n % 5 = 0 THEN 'agent-' || n % 4 END,
               jsonb_build_object('reason', 'reviewed firewall ' || n), '', ''
        FROM generate_series(1, $2::int) AS n
        """,
        TENANT,
        ROWS,
    )
    await connection.execute(
        """
        INSERT INTO trace_events (task_id, seq, tenant_id, kind, actor, message, created_at)
        SELECT gen_random_uuid(), 1, (ARRAY[$1, 'plans-b'])[1 + n % 2], 'created',
               'alice', 'task created', now() - n * interval '1 second'
        FROM generate_series(1, $2::int) AS n
        """,
        TENANT,
        ROWS,
    )
    await connection.execute("ANALYZE audit_records, trace_events")
    yield connection
    await connection.close()


async def _plan(connection: asyncpg.Connection, name: str, *arguments: Any) -> dict[str, Any]:
    async with connection.transaction():
        await connection.execute(query("plan_feed_for_its_filters"))
        raw = await connection.fetchval(f"EXPLAIN (FORMAT JSON) {query(name)}", *arguments)
    return json.loads(raw)[0]["Plan"]


def _nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    found = [plan]
    for child in plan.get("Plans", []):
        found += _nodes(child)
    return found


@pytest.mark.parametrize(
    ("filters", "index"),
    [
        (FeedFilters(), "audit_records_page"),
        (FeedFilters(actor="operator-7"), "audit_records_actor"),
        (FeedFilters(action="rejected"), "audit_records_action"),
        (FeedFilters(category="spawn"), "audit_records_category"),
        (FeedFilters(level="warning"), "audit_records_level"),
        (FeedFilters(target="task-42"), "audit_records_target"),
        (FeedFilters(ticket_id="T-3"), "audit_records_ticket"),
        (FeedFilters(agent_id="agent-2"), "audit_records_agent"),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
@pytest.mark.parametrize("deep", [False, True], ids=["first page", "deep page"])
async def test_each_audit_filter_reads_its_index_in_order(connection, filters, index, deep):
    # Deep: halfway down the trail, the cursor an index condition (nothing read twice).
    before = datetime.now(UTC) - timedelta(seconds=ROWS // 2) if deep else None
    plan = await _plan(connection, "audit_feed_records", TENANT, before, *filters.matched(), PAGE)
    nodes = _nodes(plan)
    assert [n["Node Type"] for n in nodes] == ["Limit", "Index Scan"], nodes
    assert nodes[1]["Index Name"] == index
    assert ("created_at <" in nodes[1]["Index Cond"]) is deep


async def test_the_event_page_reads_the_tenant_feed_index_from_its_cursor(connection):
    cursor = (datetime.now(UTC), UUID(int=2**128 - 1), 2**31 - 1)
    plan = await _plan(
        connection, "audit_feed_events", TENANT, *cursor, *FeedFilters().matched(), PAGE, None
    )
    scans = [n for n in _nodes(plan) if n.get("Relation Name") == "trace_events"]
    assert [n.get("Index Name") for n in scans] == ["trace_events_tenant_feed"]
    assert "created_at <=" in scans[0]["Index Cond"]
    assert not [n for n in _nodes(plan) if n["Node Type"] == "Sort"]
