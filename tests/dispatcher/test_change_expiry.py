"""A change request nobody decides expires by itself: the dispatcher's loop writes it
expired, with its ticket note, and settles the access request it guards."""

import asyncio

from dispatcher.service import DispatcherConfig, run_dispatcher
from ledger.change_models import AccessRequestCreate
from ledger.policy import load_policy
from ledger.repository import Actor, Ledger
from ledger.ticket_models import TicketCreateRequest

AGENT = Actor("agent-7", "t1", "operator")


async def test_the_dispatcher_expires_an_undecided_access_gate(fresh_pool) -> None:
    ledger = Ledger(fresh_pool, load_policy())
    ticket = await ledger.create_ticket(AGENT, TicketCreateRequest(title="Evidence review"))
    access = await ledger.request_access(
        AGENT,
        ticket.id,
        AccessRequestCreate(resource="repo demo/infra", permission="read", assignment_group="Ops"),
    )
    await fresh_pool.execute(
        "UPDATE change_requests SET expires_at = now() - interval '1 second' WHERE id = $1",
        access.change_id,
    )
    stop = asyncio.Event()
    config = DispatcherConfig(poll_interval=0.05, reap_interval=0.05, name="dispatcher:test")
    dispatcher = asyncio.create_task(run_dispatcher(fresh_pool, load_policy(), stop, config))

    async def written_expired() -> None:
        query = "SELECT status FROM change_requests WHERE id = $1"
        while await fresh_pool.fetchval(query, access.change_id) != "expired":
            await asyncio.sleep(0.05)

    try:
        await asyncio.wait_for(written_expired(), 20)
    finally:
        stop.set()
        await asyncio.wait_for(dispatcher, 20)
    [settled] = await ledger.list_access_requests("t1", ticket.id)
    assert (settled.grant_status, settled.child_ticket_status) == ("expired", "cancelled")
    kinds = [note.kind for note in await ledger.list_notes("t1", ticket.id)]
    assert "change_expired" in kinds and "access_expired" in kinds
