"""Creates that arrive together commit together, and still behave one by one: each
gets its own task and trace, an Idempotency-Key repeated inside one batch replays or
conflicts as it would across batches, and a create Postgres refuses fails alone."""

import asyncio

import asyncpg
import pytest
from conftest import fast_policy

from ledger.errors import Conflict
from ledger.models import TaskCreateRequest
from ledger.repository import Actor, Ledger

OPERATOR = Actor("olga", "t1", "operator")


def _request(title: str = "t", **fields) -> TaskCreateRequest:
    return TaskCreateRequest(lane="analysis", title=title, instructions="x", **fields)


@pytest.fixture
def ledger(fresh_pool) -> Ledger:
    return Ledger(fresh_pool, fast_policy())


async def test_creates_that_arrive_together_each_get_their_own_task(ledger) -> None:
    created = await asyncio.gather(
        *(ledger.create_task(OPERATOR, _request(f"task {n}")) for n in range(40))
    )
    assert len({c.task.id for c in created}) == 40
    for n, c in enumerate(created):
        assert c.created and c.task.title == f"task {n}"
        kinds = [event.kind for event in await ledger.list_traces("t1", c.task.id)]
        assert kinds == ["created", "policy_verdict"]


async def test_a_key_repeated_in_one_batch_replays_or_conflicts(ledger) -> None:
    first, again, other = await asyncio.gather(
        ledger.create_task(OPERATOR, _request("same"), idempotency_key="k1"),
        ledger.create_task(OPERATOR, _request("same"), idempotency_key="k1"),
        ledger.create_task(OPERATOR, _request("different"), idempotency_key="k1"),
        return_exceptions=True,
    )
    assert first.created and not again.created
    assert again.task.id == first.task.id
    assert isinstance(other, Conflict)


async def test_a_create_postgres_refuses_fails_alone(ledger) -> None:
    outcomes = await asyncio.gather(
        *(
            ledger.create_task(OPERATOR, _request("nul \x00 inside" if n == 3 else f"ok {n}"))
            for n in range(8)
        ),
        return_exceptions=True,
    )
    assert isinstance(outcomes[3], asyncpg.PostgresError)
    fine = [o for n, o in enumerate(outcomes) if n != 3]
    assert all(o.created for o in fine)
    listed = await ledger.list_tasks("t1", status=None, lane=None, limit=50, cursor=None)
    assert sorted(task.title for task in listed.tasks) == sorted(o.task.title for o in fine)
