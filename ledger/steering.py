"""Steering: notes people (and ticketing providers) send a ticket's agent while it works.

An event is addressed to a ticket agent (`ledger/ticket_agents.py`) and reaches the run
of its latest task: the worker running it delivers the agent's open events at the run's
next model call (`worker/steering.py`), without interrupting the turn in progress, and
the agent acknowledges them. Delivery is at least once and once per claim, as a signal
is in a durable workflow engine: an event is marked `delivered` to the claim whose
model input it joined (its run, attempt and claim token's hash); if that claim ends
without an acknowledgement (the worker crashed, the attempt failed or finished), the
next claim of the agent's task delivers it again, and that claim only once. Only the
claim an event was delivered to can acknowledge it, and an acknowledgement is final.

What becomes of a message sent mid-run: it waits, `pending`, while the current model
call or tool call finishes; the next model call sees it as a user message, after
everything the run has done so far, and every later call of that claim keeps seeing it
where it was placed. Nothing is interrupted or cancelled by a note; an operator who
wants the agent to stop uses stop.

Closing rules (the states are described in `migrations/0014_ticket_agents.sql`):
- `expired`: an event not acknowledged within its time to live is never delivered again
  and is written `expired` (reason `ttl`) when its agent's events are next listed;
  stopping or unassigning the agent closes its open events the same way (reason
  `agent_stopped` or `agent_unassigned`).
- `superseded`: restarting an agent hands its open events to the replacement, as
  copies; each original points at its copy (`superseded_by`).
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from uuid import UUID, uuid4

import asyncpg
from pydantic import BaseModel, ConfigDict

from ledger.fencing import Fence, FencedWrites
from ledger.redaction import Redactor
from ledger.sql import query
from ledger.states import TERMINAL
from ledger.ticket_models import STEERING_SOURCES
from ledger.traces import append_trace

SteeringState = Literal["pending", "delivered", "acknowledged", "superseded", "expired"]
# How long an event stays open: a day, then nobody is waiting for its answer any more.
STEERING_TTL_SECONDS = 86_400.0

USER_RESPONSE = "user-response"


class SteeringEvent(BaseModel):
    """One steering event as the API shows it (the claim's token hash never)."""

    model_config = ConfigDict(extra="ignore", from_attributes=True)

    id: UUID
    agent_id: UUID
    ticket_id: UUID
    note_id: UUID | None
    source: str
    author: str
    body: str
    state: SteeringState
    expires_at: datetime
    deliveries: int
    delivered_run_id: UUID | None
    delivered_attempt: int | None
    delivered_at: datetime | None
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    superseded_by: UUID | None
    closed_reason: str | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class SteeringNote:
    """An event as a worker delivers it to the agent."""

    id: UUID
    source: str
    author: str
    body: str
    deliveries: int
    created_at: datetime


def steers(source: str) -> bool:
    """Whether a note from `source` becomes a steering event for the ticket's agent:
    people and the systems they write from do; agents (their own progress notes) and
    the control plane never do."""
    return source in STEERING_SOURCES


async def steer_ticket_agent(
    connection: asyncpg.Connection,
    redactor: Redactor,
    *,
    tenant_id: str,
    ticket_id: UUID,
    note_id: UUID | None,
    source: str,
    author: str,
    body: str,
) -> SteeringEvent | None:
    """The steering event a new ticket note makes, in the note's transaction: for the
    ticket's assigned agent while its task is not finished, and for a requester's
    answer (`user-response`) whatever its task's status, since that answer resumes the
    agent. None when the note does not steer (its source, or no such agent)."""
    if not steers(source):
        return None
    finished = [] if source == USER_RESPONSE else sorted(TERMINAL)
    row = await connection.fetchrow(
        query("insert_steering_event"),
        tenant_id,
        ticket_id,
        note_id,
        uuid4(),
        source,
        redactor.text(author),
        redactor.text(body),
        STEERING_TTL_SECONDS,
        finished,
    )
    if row is None:
        return None
    await append_trace(
        connection,
        redactor,
        row["task_id"],
        "steering_received",
        actor=author,
        message=f"steering note from {source} for agent {row['agent_id']}",
        data={"event_id": str(row["id"]), "agent_id": str(row["agent_id"]), "source": source},
    )
    return SteeringEvent.model_validate(dict(row))


async def close_open_steering(
    connection: asyncpg.Connection, redactor: Redactor, agent: Any, *, reason: str, actor: str
) -> list[UUID]:
    """Close a stopped agent's open events (`expired` with `reason`), traced on its task."""
    rows = await connection.fetch(query("close_open_steering"), agent["id"], reason)
    ids = [row["id"] for row in rows]
    if ids:
        await append_trace(
            connection,
            redactor,
            agent["task_id"],
            "steering_expired",
            actor=actor,
            message=f"{len(ids)} open steering note(s) closed: {reason}",
            data={"event_ids": [str(i) for i in ids], "reason": reason},
        )
    return ids


async def supersede_open_steering(
    connection: asyncpg.Connection,
    redactor: Redactor,
    old_agent: Any,
    new_agent_id: UUID,
    *,
    actor: str,
) -> list[UUID]:
    """Hand a restarted agent's open events to its replacement: copies for the new
    agent, the originals `superseded` by them, traced on the old agent's task."""
    old = [
        row["id"]
        for row in await connection.fetch(query("open_steering_of_agent"), old_agent["id"])
    ]
    if not old:
        return []
    new = [uuid4() for _ in old]
    await connection.execute(query("copy_steering_to_agent"), old, new, new_agent_id)
    await connection.execute(query("supersede_steering"), old, new)
    await append_trace(
        connection,
        redactor,
        old_agent["task_id"],
        "steering_superseded",
        actor=actor,
        message=f"{len(old)} open steering note(s) handed to agent {new_agent_id}",
        data={"superseded": {str(o): str(n) for o, n in zip(old, new, strict=True)}},
    )
    return new


async def expire_overdue_steering(
    connection: asyncpg.Connection, redactor: Redactor, agent_id: UUID
) -> None:
    """Write `expired` on the agent's open events past their time to live."""
    rows = await connection.fetch(query("expire_overdue_steering"), agent_id)
    if rows:
        await append_trace(
            connection,
            redactor,
            rows[0]["task_id"],
            "steering_expired",
            actor="ledger",
            message=f"{len(rows)} steering note(s) expired unacknowledged",
            data={"event_ids": [str(row["id"]) for row in rows], "reason": "ttl"},
        )


class SteeringWrites(FencedWrites):
    """The worker's side: delivering a run's steering and acknowledging it, each only
    while the fence holds the run."""

    async def deliver_steering(
        self, fence: Fence, *, worker: str, task_id: UUID
    ) -> list[SteeringNote]:
        """The open events this claim has not had yet, oldest first, now `delivered` to
        it, with their trace event; none once the fence no longer holds the run."""
        async with self.pool.acquire() as connection, connection.transaction():
            rows = await connection.fetch(
                query("deliver_steering_if_holder"), *fence.columns, task_id
            )
            if not rows:
                return []
            notes = sorted(
                (
                    SteeringNote(
                        row["id"],
                        row["source"],
                        row["author"],
                        row["body"],
                        row["deliveries"],
                        row["created_at"],
                    )
                    for row in rows
                ),
                key=lambda note: (note.created_at, note.id),
            )
            await append_trace(
                connection,
                self.redactor,
                task_id,
                "steering_delivered",
                actor=worker,
                run_id=fence.run_id,
                message=f"{len(notes)} steering note(s) delivered to attempt {fence.attempt}",
                data={
                    "event_ids": [str(note.id) for note in notes],
                    "attempt": fence.attempt,
                    "redelivered": [str(note.id) for note in notes if note.deliveries > 1],
                },
            )
        return notes

    async def acknowledge_steering(
        self, fence: Fence, *, worker: str, task_id: UUID, event_ids: list[UUID] | None
    ) -> list[UUID]:
        """Acknowledge events delivered to this claim (`event_ids`, or all of them):
        the ids acknowledged now, with their trace event."""
        async with self.pool.acquire() as connection, connection.transaction():
            rows = await connection.fetch(
                query("acknowledge_steering_if_holder"),
                *fence.columns,
                task_id,
                event_ids,
                worker,
            )
            acknowledged = [row["id"] for row in rows]
            if acknowledged:
                await append_trace(
                    connection,
                    self.redactor,
                    task_id,
                    "steering_acknowledged",
                    actor=worker,
                    run_id=fence.run_id,
                    message=f"{len(acknowledged)} steering note(s) acknowledged",
                    data={"event_ids": [str(i) for i in acknowledged]},
                )
        return acknowledged
