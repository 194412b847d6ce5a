"""What an executor gets for one claimed run."""

from dataclasses import dataclass

from ledger.artifact_store import ArtifactStore
from ledger.leases import Claim, Leases
from ledger.models import Task
from ledger.policy import Lane, PolicyConfig


@dataclass(frozen=True)
class RunContext:
    claim: Claim
    leases: Leases
    store: ArtifactStore
    worker: str
    policy: PolicyConfig

    @property
    def task(self) -> Task:
        return self.claim.task

    @property
    def lane(self) -> Lane:
        return self.policy.lanes[self.claim.task.lane]
