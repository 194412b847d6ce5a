"""The lane protocol: send a batch, receive with peek-lock, complete, abandon,
dead-letter, renew lock. `postgres.py` and `servicebus.py` implement it."""

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID


@dataclass(frozen=True)
class LaneMessage:
    """What the dispatcher sends: a hint, never the task itself."""

    message_id: str
    task_id: UUID
    run_id: UUID
    attempt: int
    lane: str

    def properties(self) -> dict[str, str | int]:
        return {
            "task_id": str(self.task_id),
            "run_id": str(self.run_id),
            "attempt": self.attempt,
            "lane": self.lane,
        }

    @classmethod
    def from_properties(cls, message_id: str, properties: dict[str, Any]) -> "LaneMessage":
        return cls(
            message_id=message_id,
            task_id=UUID(str(properties["task_id"])),
            run_id=UUID(str(properties["run_id"])),
            attempt=int(properties["attempt"]),
            lane=str(properties["lane"]),
        )


@dataclass(frozen=True)
class Received:
    """A message under a peek-lock: invisible to other receivers until `locked_until`,
    then delivered again unless settled. `delivery_count` counts deliveries so far, this
    one included: 1 on the first delivery, + 1 for each abandon or lock expiry, on every
    transport."""

    message: LaneMessage
    delivery_count: int
    locked_until: datetime
    handle: Any  # the transport's own reference, needed to settle


class LockLost(Exception):
    """The lock expired, the message was already settled, or the receiver that took it
    was closed, before this settlement."""


class Lane(Protocol):
    name: str

    async def send_batch(self, messages: list[LaneMessage]) -> None: ...

    async def receive(self, max_messages: int, max_wait: float) -> list[Received]: ...

    async def complete(self, received: Received) -> None: ...

    async def complete_batch(self, batch: list[Received]) -> list[Received]:
        """Complete each message; returns those whose lock was lost (see `LockLost`)."""
        ...

    async def abandon(self, received: Received) -> None: ...

    async def dead_letter(self, received: Received, reason: str, description: str) -> None: ...

    async def renew_lock(self, received: Received) -> datetime: ...

    async def close(self) -> None: ...
