"""What an executor gets for one claimed run."""

import asyncio
from dataclasses import dataclass, field

from ledger.artifact_store import ArtifactStore
from ledger.leases import Claim, Leases
from ledger.models import Task
from ledger.policy import Lane, PolicyConfig
from worker.runtime_access import RuntimeAccess


@dataclass(frozen=True)
class RunContext:
    """The claim holds both of the run's secrets: the fence's claim token, for the
    worker's own writes, and the agent session's credential (`claim.grant`), the only
    one the agent's SDK tools present when it acts about itself (channels, context)."""

    claim: Claim
    leases: Leases
    store: ArtifactStore
    worker: str
    policy: PolicyConfig
    # The agent runtime its agent's SDK tools and definition come from
    # (`worker/session_agent.py`). None only outside a worker and the API (a benchmark
    # of the queue itself): the lane's plain agent, without the runtime's tools.
    agent_runtime: RuntimeAccess | None = None
    # Held while the run's buffered trace events are drained and written (the heartbeat
    # and the live stream both write them), so they reach the ledger in the order made.
    writing: asyncio.Lock = field(default_factory=asyncio.Lock, compare=False, repr=False)

    @property
    def task(self) -> Task:
        return self.claim.task

    @property
    def lane(self) -> Lane:
        return self.policy.lanes[self.claim.task.lane]
