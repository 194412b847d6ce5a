"""The agent runtime as the API and the SDK tools use it, behind one object:
`AgentRuntime`, the ledger's side of what a running agent does about itself.

- sessions (`ledger/agent_sessions.py`): authenticating a session's credential;
- coordination channels (`ledger/channels.py`): list, send, reply, receive (waiting).

The sessions themselves are opened by the claim (`ledger/claims.py`), in its
transaction. Every method takes the `Caller` the credential authenticated, so what an
agent reads and writes is scoped to its tenant, its session and its lease.
"""

import asyncpg

from ledger.agent_sessions import Sessions
from ledger.channels import Channels
from ledger.policy import PolicyConfig
from ledger.redaction import Redactor


class AgentRuntime(Sessions, Channels):
    def __init__(self, pool: asyncpg.Pool, policy: PolicyConfig) -> None:
        self.pool = pool
        self.policy = policy
        self.redactor = Redactor(policy.secret_keys)
        self._ensured = set()
