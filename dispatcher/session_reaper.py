"""The session reaper: stops spawned sessions that must stop.

- A child whose TTL has passed stops (`ttl_expired`).
- A child with `auto_stop_on_parent` stops when its parent has stopped (`parent_stopped`):
  stopped itself, or its task finished (succeeded, failed, cancelled, ...; a parent
  whose worker died and whose task is retried has not stopped: it is claimed again).
  Each round reaches one level further down a tree, so a turn stops a whole tree.
- A child whose own task finished is marked stopped (`completed`).

Stopping a child releases its lease first: its task is cancelled (the worker running it
is told and stops), then the session is written stopped with its reason and a
`session_stopped` event in the child's trace. Several dispatcher replicas may run it: a
session another one stopped no longer matches, and cancelling a task twice is refused.
"""

import contextlib
from collections import Counter
from dataclasses import dataclass

import asyncpg

from ledger.errors import InvalidTransition
from ledger.policy import PolicyConfig
from ledger.repository import Actor, Ledger
from ledger.sql import query
from ledger.states import TERMINAL
from ledger.traces import append_trace


@dataclass(frozen=True)
class SessionReaperConfig:
    actor: str
    batch_size: int = 100
    # Rounds per turn: how many levels of a tree one turn stops at most.
    rounds: int = 10


class SessionReaper:
    def __init__(
        self, pool: asyncpg.Pool, policy: PolicyConfig, config: SessionReaperConfig
    ) -> None:
        self.pool = pool
        self.ledger = Ledger(pool, policy)
        self.config = config

    async def run_once(self) -> Counter[str]:
        """Sessions stopped this turn, by reason."""
        stopped: Counter[str] = Counter()
        for _ in range(self.config.rounds):
            due = await self.pool.fetch(
                query("sessions_to_stop"), list(TERMINAL), self.config.batch_size
            )
            if not due:
                break
            for session in due:
                if await self._stop(session):
                    stopped[session["reason"]] += 1
        return stopped

    async def _stop(self, session: asyncpg.Record) -> bool:
        reason = session["reason"]
        if reason != "completed":
            actor = Actor(self.config.actor, session["tenant_id"], "operator")
            # Refused when it finished meanwhile: then nothing holds a lease any more.
            with contextlib.suppress(InvalidTransition):
                await self.ledger.cancel(actor, session["task_id"], reason=reason)
        async with self.pool.acquire() as connection, connection.transaction():
            if await connection.fetchval(query("stop_session"), session["id"], reason) is None:
                return False  # another replica stopped it
            await append_trace(
                connection,
                self.ledger.redactor,
                session["task_id"],
                "session_stopped",
                actor=self.config.actor,
                message=f"session {session['id']} stopped: {reason}",
                data={"session_id": str(session["id"]), "reason": reason},
            )
        return True
