"""Agent sessions and their credentials: every claim binds the task's session to the
claim with a new credential, stored only as a hash; the credential works while the
claim holds the run and is refused once its lease has ended, however it ended."""

import asyncio

import pytest
from conftest import fast_policy

from ledger.agent_runtime import AgentRuntime
from ledger.agent_sessions import CredentialRefused, LeaseEnded, credential_hash
from ledger.leases import Claim, Hint, Leases
from ledger.models import TaskCreateRequest
from ledger.repository import Actor, Ledger

OPERATOR = Actor("olga", "t1", "operator")


@pytest.fixture
def policy():
    return fast_policy()


@pytest.fixture
def ledger(fresh_pool, policy):
    return Ledger(fresh_pool, policy)


@pytest.fixture
def leases(fresh_pool, policy):
    return Leases(fresh_pool, policy)


@pytest.fixture
def runtime(fresh_pool, policy):
    return AgentRuntime(fresh_pool, policy)


async def _claimed(ledger: Ledger, leases: Leases, lane: str = "analysis") -> Claim:
    request = TaskCreateRequest(lane=lane, title="t", instructions="x")
    task = (await ledger.create_task(OPERATOR, request)).task
    claim = await leases.claim(
        task_id=task.id, run_id=task.current_run_id, attempt=1, worker="w1", via="test"
    )
    assert claim is not None
    return claim


async def test_a_claim_opens_the_session_with_its_lineage_and_channel(
    ledger, leases, runtime, fresh_pool, policy
) -> None:
    claim = await _claimed(ledger, leases)
    grant = claim.grant
    session = grant.session
    assert (session.state, session.type, session.run_id) == ("active", "task", claim.run.id)
    assert session.agent_name == "workbench-analysis" and session.workspace_id == "analysis"
    lineage = session.lineage
    assert (lineage.parent_session_id, lineage.root_session_id) == (None, session.id)
    assert lineage.spawn_depth == 0 and not lineage.auto_stop_on_parent
    assert lineage.permission_policy.tools == sorted(policy.lanes["analysis"].tools)
    assert lineage.permission_policy.network_channels == ["ops-room"]
    assert lineage.spawn_budget.max_children == policy.coordinator_for("analysis").max_children
    assert grant.channel.run_id == claim.run.id and session.channel == grant.channel.id
    assert grant.channel.channel == f"coord-run-{claim.run.id}"
    assert "status" in grant.channel.allowed_message_kinds

    caller = await runtime.authenticate(grant.credential)
    assert (caller.session_id, caller.tenant_id) == (session.id, "t1")
    # Only the hash is kept, beside the claim it was issued with.
    row = await fresh_pool.fetchrow("SELECT * FROM agent_sessions WHERE id = $1", session.id)
    assert row["credential_hash"] == credential_hash(grant.credential)
    assert row["claim_token_hash"] == claim.fence.token_hash
    assert grant.credential not in str(dict(row))
    assert grant.credential.startswith("wbs_") and claim.fence.claim_token.startswith("wbc_")


async def test_the_credential_is_refused_once_the_run_is_completed(ledger, leases, runtime) -> None:
    claim = await _claimed(ledger, leases)
    await leases.complete(claim.fence, worker="w1", result={})
    with pytest.raises(LeaseEnded) as refused:
        await runtime.authenticate(claim.grant.credential)
    assert refused.value.details["run_status"] == "succeeded"
    assert refused.value.details["session_state"] == "stopped"
    with pytest.raises(CredentialRefused):
        await runtime.authenticate("wbs_" + "x" * 43)


async def test_a_released_run_reclaimed_keeps_its_session_with_a_new_credential(
    ledger, leases, runtime
) -> None:
    first = await _claimed(ledger, leases)
    await leases.release(first.fence, worker="w1", reason="draining")
    with pytest.raises(LeaseEnded) as refused:
        await runtime.authenticate(first.grant.credential)
    assert refused.value.details["session_state"] == "starting"
    again = await leases.claim(
        task_id=first.task.id, run_id=first.run.id, attempt=1, worker="w2", via="test"
    )
    assert again is not None
    assert again.grant.session.id == first.grant.session.id
    assert again.grant.channel.id == first.grant.channel.id  # one channel per run
    assert again.grant.credential != first.grant.credential
    with pytest.raises(CredentialRefused):  # its hash was replaced by the new claim's
        await runtime.authenticate(first.grant.credential)
    assert (await runtime.authenticate(again.grant.credential)).attempt == 1


async def test_the_credential_stops_working_when_the_lease_runs_out(
    ledger, leases, runtime, fresh_pool
) -> None:
    claim = await _claimed(ledger, leases)
    await runtime.authenticate(claim.grant.credential)
    # The worker died: no heartbeat; the lease (1 s here) runs out before any reaper.
    while await fresh_pool.fetchval(
        "SELECT lease_until > now() FROM runs WHERE id = $1", claim.run.id
    ):
        await asyncio.sleep(0.05)
    with pytest.raises(LeaseEnded):
        await runtime.authenticate(claim.grant.credential)


async def test_a_batch_claim_opens_one_session_per_run(ledger, leases, runtime) -> None:
    tasks = [
        (
            await ledger.create_task(
                OPERATOR, TaskCreateRequest(lane=lane, title="t", instructions="x")
            )
        ).task
        for lane in ("analysis", "change-nonprod", "analysis")
    ]
    hints = [Hint(task.id, task.current_run_id, 1) for task in tasks]
    claims = await leases.claim_batch([*hints, hints[0]], worker="w1", via="test")
    assert claims[-1] is None  # a second copy of a hint claims nothing
    grants = [claim.grant for claim in claims[:-1]]
    assert len({grant.session.id for grant in grants}) == 3
    assert len({grant.channel.id for grant in grants}) == 3
    assert [grant.session.workspace_id for grant in grants] == [t.lane for t in tasks]
    nonprod = grants[1].session.lineage.permission_policy
    assert "propose_change" in nonprod.tools and nonprod.network_channels == []
    for grant in grants:
        assert (await runtime.authenticate(grant.credential)).session_id == grant.session.id
