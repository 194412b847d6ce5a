"""The agent runtime as the API and the SDK tools use it, behind one object:
`AgentRuntime`, the ledger's side of what a running agent does about itself.

- sessions (`ledger/agent_sessions.py`): authenticating a session's credential;
- coordination channels (`ledger/channels.py`): list, send, reply, receive (waiting);
- its view of itself (`ledger/agent_context.py`): `me`, its workspace's coordinator
  settings, the context bundle;
- spawning helpers within budgets (`ledger/spawns.py`).

The sessions themselves are opened by the claim (`ledger/claims.py`), in its
transaction. Every method takes the `Caller` the credential authenticated, so what an
agent reads and writes is scoped to its tenant, its session and its lease.
"""

import asyncpg

from ledger.agent_sessions import Sessions
from ledger.creation import TaskCreation
from ledger.policy import PolicyConfig
from ledger.redaction import Redactor
from ledger.spawns import Spawns


class AgentRuntime(Sessions, Spawns):
    def __init__(self, pool: asyncpg.Pool, policy: PolicyConfig) -> None:
        self.pool = pool
        self.policy = policy
        self.redactor = Redactor(policy.secret_keys)
        self._ensured = set()
        # A spawned child's task is created like any task, with its verdict.
        self.tasks = TaskCreation(pool, policy)
