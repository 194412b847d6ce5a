"""The change expiry sweeper: a pending change request past its `expires_at` is written
`expired`, with its ticket note and audit record, and the access request it guards is
settled (`Changes.expire_change`). Reads already show such a change expired and a
decision refuses it; the sweeper makes the record say so without anyone asking, as an
approval that times out fails by itself.

Several dispatcher replicas may run it: a change another one expired no longer matches
the guarded update, and is skipped.
"""

from dataclasses import dataclass

import asyncpg

from ledger.policy import PolicyConfig
from ledger.repository import Actor, Ledger
from ledger.sql import query


@dataclass(frozen=True)
class ChangeExpiryConfig:
    actor: str
    batch_size: int = 100


class ChangeExpiry:
    def __init__(
        self, pool: asyncpg.Pool, policy: PolicyConfig, config: ChangeExpiryConfig
    ) -> None:
        self.pool = pool
        self.ledger = Ledger(pool, policy)
        self.config = config

    async def run_once(self) -> int:
        """Changes expired this turn (at most one batch)."""
        due = await self.pool.fetch(query("changes_due_to_expire"), self.config.batch_size)
        expired = 0
        for change in due:
            actor = Actor(self.config.actor, change["tenant_id"], "worker")
            if await self.ledger.expire_change(actor, change["id"]) is not None:
                expired += 1
        return expired
