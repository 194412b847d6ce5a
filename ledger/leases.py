"""Worker-facing ledger operations, behind one object: `Leases`.

- claims and heartbeats (`ledger/claims.py`): a claim returns a `Fence`, and every
  later write presents it (`ledger/fencing.py`);
- writes while holding a run (`ledger/run_writes.py`): artifacts, trace events, SDK
  spans, token usage;
- outcomes (`ledger/outcomes.py`): complete, fail, block, pause, release;
- steering (`ledger/steering.py`): a ticket agent's notes delivered to its run and
  acknowledged by it.

The reaper's rescue of expired leases lives with the dispatcher (`dispatcher/reaper.py`).
The types the methods take and return are importable from here too.
"""

from ledger.claims import Claim, Claims, Hint
from ledger.fencing import Fence, FenceRejected
from ledger.outcomes import Outcomes
from ledger.run_writes import NewArtifact, SpanEvent, Usage
from ledger.steering import SteeringWrites

__all__ = [
    "Claim",
    "Fence",
    "FenceRejected",
    "Hint",
    "Leases",
    "NewArtifact",
    "SpanEvent",
    "Usage",
]


class Leases(Claims, Outcomes, SteeringWrites):
    """Everything a worker does to the ledger, each write fenced."""
