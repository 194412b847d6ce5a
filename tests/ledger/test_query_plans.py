"""The task list, task reads and the dispatcher's batch stay index lookups however
large the ledger or the backlog grows.

EXPLAIN of the real statements from `ledger/queries/tasks.sql`, prepared the way the
API's pool prepares them and executed past the point (five executions) where Postgres
may settle on a generic plan, over enough rows that a scan of the table would be
chosen if it were cheaper: each read is an Index Scan on the index meant for it, the
keyset cursor is an index condition (a deep page does not read and discard the pages
before it), and nothing is sorted.
"""

import json
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg
import pytest

from ledger.migrate import apply_migrations
from ledger.sql import query

ROWS = 20_000
TENANT = "plans-main"
PAGE = 51  # the API asks for one row more than the page, to know whether more follow


@pytest.fixture(scope="module")
async def connection(make_database: Callable[[], str]) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(make_database())
    await apply_migrations(connection)
    # Half the rows in the tenant queried, the rest in three others; statuses and lanes
    # mixed through the whole history, one task a minute.
    await connection.execute(
        """
        INSERT INTO tasks (id, tenant_id, lane, title, instructions, mutation_level,
                           model_provider, status, policy_verdict, max_attempts,
                           created_by, created_at)
        SELECT gen_random_uuid(),
               (ARRAY[$1, $1, $1, 'plans-b', 'plans-c', 'plans-d'])[1 + n % 6],
               (ARRAY['analysis', 'analysis', 'change-nonprod', 'change-prod'])[1 + n % 4],
               'task ' || n, 'Summarise.', 'read_only', 'offline',
               (ARRAY['succeeded', 'succeeded', 'succeeded', 'succeeded', 'succeeded',
                      'failed', 'queued', 'denied', 'cancelled'])[1 + (n / 6) % 9],
               '{"decision": "allow", "reasons": [], "profile": "standard",
                 "policy_version": "1"}',
               3, 'alice', now() - n * interval '1 minute'
        FROM generate_series(1, $2::int) AS n
        """,
        TENANT,
        ROWS,
    )
    await connection.execute("ANALYZE tasks")
    yield connection
    await connection.close()


def _literal(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, datetime):
        return f"'{value.isoformat()}'"
    return "'" + str(value).replace("'", "''") + "'"


async def _steady_plan(
    connection: asyncpg.Connection, name: str, arguments: list[Any]
) -> dict[str, Any]:
    """The plan of `EXECUTE` after the statement ran often enough that Postgres has
    decided between custom and generic plans, as on a pooled connection."""
    statement = f"plan_{name}"
    literal = ", ".join(_literal(value) for value in arguments)
    await connection.execute(f"PREPARE {statement} AS {query(name)}")
    try:
        for _ in range(10):
            await connection.execute(f"EXECUTE {statement}({literal})")
        raw = await connection.fetchval(
            f"EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE {statement}({literal})"
        )
    finally:
        await connection.execute(f"DEALLOCATE {statement}")
    return json.loads(raw)[0]["Plan"]


def _nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    found = [plan]
    for child in plan.get("Plans", []):
        found += _nodes(child)
    return found


def _assert_index_scan(plan: dict[str, Any], index: str, *conditions: str) -> dict[str, Any]:
    kinds = [node["Node Type"] for node in _nodes(plan)]
    assert "Seq Scan" not in kinds, kinds
    assert "Sort" not in kinds, kinds
    scans = [node for node in _nodes(plan) if node["Node Type"] == "Index Scan"]
    assert [scan["Index Name"] for scan in scans] == [index], kinds
    scan = scans[0]
    for condition in conditions:
        assert condition in scan["Index Cond"], scan["Index Cond"]
    # Every row the scan read was returned: none read only to be filtered out.
    assert scan.get("Rows Removed by Filter", 0) == 0, scan
    return scan


async def _middle(connection: asyncpg.Connection, status: str | None = None) -> asyncpg.Record:
    """The last task of a page half way down the tenant's list: a deep cursor."""
    return await connection.fetchrow(
        """WITH listed AS (
               SELECT created_at, id FROM tasks
               WHERE tenant_id = $1 AND ($2::text IS NULL OR status = $2))
           SELECT created_at, id FROM listed ORDER BY created_at DESC, id DESC
           OFFSET (SELECT count(*) / 2 FROM listed) LIMIT 1""",
        TENANT,
        status,
    )


async def test_first_page_reads_the_tenant_index_in_order(connection) -> None:
    plan = await _steady_plan(connection, "list_tasks", [TENANT, None, None, None, None, PAGE])
    _assert_index_scan(plan, "tasks_tenant_page", "tenant_id")
    assert plan["Actual Rows"] == PAGE


async def test_deep_page_seeks_to_the_cursor(connection) -> None:
    middle = await _middle(connection)
    plan = await _steady_plan(
        connection,
        "list_tasks",
        [TENANT, None, None, middle["created_at"], middle["id"], PAGE],
    )
    _assert_index_scan(plan, "tasks_tenant_page", "tenant_id", "created_at")
    assert plan["Actual Rows"] == PAGE


# A terminal status is a phase of its own; queued shares the phase "active" with the
# statuses between it and a worker (migration 0008).
@pytest.mark.parametrize("status", ["failed", "queued"])
async def test_status_filter_reads_the_phase_index(connection, status: str) -> None:
    plan = await _steady_plan(connection, "list_tasks", [TENANT, status, None, None, None, PAGE])
    _assert_index_scan(plan, "tasks_tenant_phase_page", "tenant_id", "phase")
    assert plan["Actual Rows"] == PAGE


async def test_status_filter_with_a_deep_cursor(connection) -> None:
    middle = await _middle(connection, "failed")
    plan = await _steady_plan(
        connection,
        "list_tasks",
        [TENANT, "failed", None, middle["created_at"], middle["id"], PAGE],
    )
    _assert_index_scan(plan, "tasks_tenant_phase_page", "phase", "created_at")


async def test_lane_filter_reads_the_lane_index(connection) -> None:
    plan = await _steady_plan(
        connection, "list_tasks", [TENANT, None, "change-prod", None, None, PAGE]
    )
    _assert_index_scan(plan, "tasks_tenant_lane_page", "tenant_id", "lane")
    assert plan["Actual Rows"] == PAGE


async def test_get_task_is_a_primary_key_lookup(connection) -> None:
    task_id: UUID = await connection.fetchval(
        "SELECT id FROM tasks WHERE tenant_id = $1 LIMIT 1", TENANT
    )
    plan = await _steady_plan(connection, "get_task", [TENANT, task_id])
    _assert_index_scan(plan, "tasks_pkey", "id")
    assert plan["Actual Rows"] == 1


async def test_dispatch_batch_reads_only_the_runs_it_sends(connection) -> None:
    """The dispatcher's batch walks the due-runs index oldest first and stops at the
    batch size: a backlog of thousands costs a batch of 10 what a backlog of 10 does."""
    async with connection.transaction():  # the runs and their links are rolled back
        await connection.execute(
            """
            WITH waiting AS (
                SELECT id, tenant_id, lane, gen_random_uuid() AS run_id,
                       row_number() OVER (ORDER BY id) AS n
                FROM tasks WHERE status = 'queued'),
            runs_added AS (
                INSERT INTO runs (id, task_id, tenant_id, lane, attempt, status, available_at)
                SELECT run_id, id, tenant_id, lane, 1, 'queued',
                       now() - n * interval '1 second'
                FROM waiting)
            UPDATE tasks SET current_run_id = waiting.run_id, attempt = 1
            FROM waiting WHERE tasks.id = waiting.id
            """
        )
        await connection.execute("ANALYZE runs")
        backlog = await connection.fetchval("SELECT count(*) FROM runs WHERE status = 'queued'")
        assert backlog > 2000
        plan = await _steady_plan(connection, "lock_due_runs", [10, "{analysis,change-nonprod}"])
    kinds = [node["Node Type"] for node in _nodes(plan)]
    assert "Seq Scan" not in kinds and "Sort" not in kinds, kinds
    scans = {node["Index Name"]: node for node in _nodes(plan) if "Index Name" in node}
    assert scans["runs_due"]["Actual Rows"] <= 20  # read in order, up to the batch
    [lock] = [node for node in _nodes(plan) if node["Node Type"] == "LockRows"]
    assert lock["Actual Rows"] * lock["Actual Loops"] == 10  # only the tasks it sends
    assert plan["Actual Rows"] == 10
