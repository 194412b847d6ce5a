"""Opens each lane's transport, as the lanes file says, once per process."""

from typing import Any

import asyncpg

from lanes.base import Lane
from lanes.postgres import LaneListener, PostgresLane
from ledger.policy import PolicyConfig


class LaneNotConfigured(LookupError):
    pass


class LaneRegistry:
    def __init__(self, pool: asyncpg.Pool, policy: PolicyConfig) -> None:
        self.pool = pool
        self.policy = policy
        self._listener = LaneListener(pool)
        self._servicebus: Any = None
        self._lanes: dict[str, Lane] = {}

    def configured(self) -> list[str]:
        """Lanes with a transport, i.e. the ones the dispatcher sends to."""
        return [name for name, lane in self.policy.lanes.items() if lane.transport]

    def get(self, name: str) -> Lane:
        if name in self._lanes:
            return self._lanes[name]
        lane = self.policy.lanes.get(name)
        if lane is None or lane.transport is None:
            raise LaneNotConfigured(f"lane {name} has no transport configured")
        transport = lane.transport
        opened: Lane
        if transport.kind == "postgres":
            opened = PostgresLane(
                self.pool,
                self._listener,
                name,
                lock_seconds=transport.lock_seconds,
                max_delivery_count=transport.max_delivery_count,
            )
        else:
            from lanes.servicebus import ServiceBusLane, client_from_env

            if self._servicebus is None:
                self._servicebus = client_from_env()
            opened = ServiceBusLane(self._servicebus, name, transport.queue)
        self._lanes[name] = opened
        return opened

    async def close(self) -> None:
        for lane in self._lanes.values():
            await lane.close()
        self._lanes.clear()
        await self._listener.close()
        if self._servicebus is not None:
            await self._servicebus.close()
            self._servicebus = None
