"""The agent runtime as a worker-run agent reaches it: the ledger's side of it
(`ledger/agent_runtime.py`, the code the `/api/agent/*` routes call too), the
process's channel receives waiting together (`ledger/channel_waits.py`, a channel's new
message), the wake-up a wait for a child follows (its trace growing), and the change
gates a ticket's agent asks to pass (`ledger/changes.py`, as `/api/changes` uses them).

One per worker process, shared by its runs; its LISTEN connections are made when a
run first waits and closed when the worker stops. No SDK here: `RunContext` holds it.
"""

from dataclasses import dataclass

import asyncpg

from ledger.agent_runtime import AgentRuntime
from ledger.changes import Changes
from ledger.channel_waits import ChannelWaits
from ledger.notify_feed import TRACES, NotifyFeed
from ledger.policy import PolicyConfig


@dataclass(frozen=True)
class RuntimeAccess:
    runtime: AgentRuntime
    channel_waits: ChannelWaits
    trace_feed: NotifyFeed
    changes: Changes

    @classmethod
    def open(cls, pool: asyncpg.Pool, policy: PolicyConfig) -> "RuntimeAccess":
        return cls(
            AgentRuntime(pool, policy),
            ChannelWaits(pool),
            NotifyFeed(pool, TRACES),
            Changes(pool, policy),
        )

    async def close(self) -> None:
        await self.channel_waits.close()
        await self.trace_feed.listener.close()
