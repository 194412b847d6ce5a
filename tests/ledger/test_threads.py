"""Threads in the ledger: created for a registered agent, listed per tenant, and a run
in one is a governed task that records the user's message with it."""

from uuid import uuid4

import pytest
from conftest import fast_policy

from ledger.errors import BadRequest, Conflict, NotFound
from ledger.leases import Leases
from ledger.models import AgentConfig
from ledger.repository import Actor, Ledger
from ledger.run_writes import NewMessage


def _actor(tenant: str, role: str = "operator") -> Actor:
    return Actor("olga", tenant, role)


async def test_a_thread_needs_a_registered_agent(pool) -> None:
    ledger = Ledger(pool, fast_policy())
    with pytest.raises(BadRequest) as refused:
        await ledger.create_thread(_actor("th1"), "sql-agent")
    assert refused.value.details["field"] == "agent_type"
    assert "it-router" in refused.value.details["allowed"]


async def test_threads_are_listed_per_tenant_most_recent_first(pool) -> None:
    ledger = Ledger(pool, fast_policy())
    tenant = f"th-{uuid4().hex[:8]}"
    first = await ledger.create_thread(_actor(tenant), "it-router", title="first")
    second = await ledger.create_thread(_actor(tenant), "runbook-agent", title="second")
    await ledger.create_thread(_actor("someone-else"), "it-router")
    assert [t.id for t in await ledger.list_threads(_actor(tenant))] == [second.id, first.id]
    assert [t.id for t in await ledger.list_threads(_actor(tenant), "it-router")] == [first.id]
    # A run makes its thread the most recently active.
    await ledger.start_run(_actor(tenant), first.id, "why is checkout slow?")
    assert [t.id for t in await ledger.list_threads(_actor(tenant))] == [first.id, second.id]
    with pytest.raises(NotFound):
        await ledger.get_thread(_actor("someone-else"), first.id)
    with pytest.raises(NotFound):
        await ledger.start_run(_actor("someone-else"), first.id, "hello")


async def test_a_run_is_a_governed_task_with_the_users_message(pool) -> None:
    ledger = Ledger(pool, fast_policy())
    actor = _actor(f"th-{uuid4().hex[:8]}")
    thread = await ledger.create_thread(actor, "change-planner")
    created = await ledger.start_run(
        actor, thread.id, "upgrade nginx\nwith api_key=sk-live-1234567890abcdef"
    )
    task = created.task
    assert (task.thread_id, task.agent_type, task.lane) == (
        thread.id,
        "change-planner",
        "change-nonprod",
    )
    assert task.policy_verdict.decision == "allow"
    assert task.title == "Change Planner: upgrade nginx"
    [message] = await ledger.messages(actor, thread.id)
    assert (message.seq, message.role, message.task_id) == (1, "user", task.id)
    assert "sk-live-1234567890abcdef" not in message.content


async def test_one_active_run_per_thread(pool) -> None:
    policy = fast_policy()
    ledger, leases = Ledger(pool, policy), Leases(pool, policy)
    actor = _actor(f"th-{uuid4().hex[:8]}")
    thread = await ledger.create_thread(actor, "it-router")
    task = (await ledger.start_run(actor, thread.id, "first question")).task
    with pytest.raises(Conflict):
        await ledger.start_run(actor, thread.id, "second question")
    # The refused message is not in the history.
    assert [m.content for m in await ledger.messages(actor, thread.id)] == ["first question"]
    claim = await leases.claim(
        task_id=task.id, run_id=task.current_run_id, attempt=1, worker="w1", via="test"
    )
    with pytest.raises(Conflict):  # running is still active
        await ledger.start_run(actor, thread.id, "second question")
    await leases.complete(claim.fence, worker="w1", messages=[NewMessage("assistant", "answer")])
    await ledger.start_run(actor, thread.id, "second question")
    history = await ledger.messages(actor, thread.id)
    assert [(m.seq, m.role, m.content) for m in history] == [
        (1, "user", "first question"),
        (2, "assistant", "answer"),
        (3, "user", "second question"),
    ]


async def test_a_provider_the_agent_does_not_use_is_refused(pool) -> None:
    ledger = Ledger(pool, fast_policy())
    actor = _actor("th2")
    thread = await ledger.create_thread(actor, "it-router")
    with pytest.raises(BadRequest) as refused:
        await ledger.start_run(actor, thread.id, "hi", AgentConfig(provider="acme"))
    assert refused.value.details["field"] == "agent_config.provider"


async def test_a_session_id_names_one_thread_per_tenant(pool) -> None:
    ledger = Ledger(pool, fast_policy())
    actor = _actor(f"th-{uuid4().hex[:8]}")
    thread = await ledger.create_thread(actor, "it-router", session_id="sess-abc123")
    assert thread.session_id == "sess-abc123"
    assert (await ledger.thread_by_session(actor, "sess-abc123")).id == thread.id
    assert await ledger.thread_by_session(_actor("other"), "sess-abc123") is None
    with pytest.raises(Conflict):
        await ledger.create_thread(actor, "it-router", session_id="sess-abc123")
    plain = await ledger.create_thread(actor, "it-router")
    assert plain.session_id == str(plain.id)
