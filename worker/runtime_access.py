"""The agent runtime as a worker-run agent reaches it: the ledger's side of it
(`ledger/agent_runtime.py`, the code the `/api/agent/*` routes call too) and the two
wake-ups its waits follow (a channel's new message, a child's trace growing).

One per worker process, shared by its runs; its LISTEN connections are made when a
run first waits and closed when the worker stops. No SDK here: `RunContext` holds it.
"""

from dataclasses import dataclass

import asyncpg

from ledger.agent_runtime import AgentRuntime
from ledger.notify_feed import CHANNELS, TRACES, NotifyFeed
from ledger.policy import PolicyConfig


@dataclass(frozen=True)
class RuntimeAccess:
    runtime: AgentRuntime
    channel_feed: NotifyFeed
    trace_feed: NotifyFeed

    @classmethod
    def open(cls, pool: asyncpg.Pool, policy: PolicyConfig) -> "RuntimeAccess":
        return cls(AgentRuntime(pool, policy), NotifyFeed(pool, CHANNELS), NotifyFeed(pool, TRACES))

    async def close(self) -> None:
        await self.channel_feed.listener.close()
        await self.trace_feed.listener.close()
