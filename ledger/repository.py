"""The ledger as the API and the tools use it, behind one object: `Ledger`.

- reads (`ledger/reads.py`): tasks a page at a time, runs, traces, artifacts;
- creation (`ledger/creation.py`): the verdict, the task, its first run and events;
- conversations (`ledger/threads.py`): threads, their history, a run in a thread;
- client-side agent sessions (`ledger/client_sessions.py`): a thread whose client
  takes its steps, each a thread run;
- an operator's decisions (`ledger/decisions.py`): approve, reject, retry, cancel,
  rollback, each a guarded statement plus its trace event in one transaction;
- approval requests (`ledger/approvals.py`): a paused tool call's request, resolved
  by the same guarded decision as the task's tool-call approval;
- IT requests (`ledger/it_requests.py`), each registered as a ticket;
- tickets (`ledger/tickets.py`): status, assignment, notes, attachments, a request
  for information and its answer; change requests (`ledger/changes.py`), access
  requests (`ledger/access_requests.py`) and a ticket's context bundle
  (`ledger/ticket_context.py`); agents on tickets and their steering
  (`ledger/ticket_agents.py`);
- the audit trail (`ledger/audit_trail.py`): a tenant's hash chain checked, its feed;
- the dashboard's overview (`ledger/dashboard.py`): counts, trends, recent activity;
- global search (`ledger/global_search.py`): full-text over the tenant's records;
- agent runtime settings and the tasks started from them (`ledger/agent_config.py`);
- the operator console's own reads (`ledger/overview.py`): a text filter, counts per
  status, a task's runs, what waits for a decision, lanes and workers; and of the
  agent runtime (`ledger/runtime_overview.py`): sessions, channels, refused spawns;
  and of the operations data (`ledger/operations_overview.py`): changes pending first,
  a ticket's steering events.

The worker's side is `ledger/leases.py`. Every module of `ledger/` that talks to
Postgres runs the named queries of `queries/*.sql`; none assembles SQL. The types the
methods take and return are importable from here too.
"""

from ledger.actor import Actor
from ledger.agent_config import AgentConfigs
from ledger.approvals import Approvals
from ledger.audit_trail import AuditTrail
from ledger.client_sessions import ClientSessions
from ledger.creation import CreatedTask
from ledger.dashboard import Dashboard
from ledger.decisions import Transition
from ledger.errors import BadRequest
from ledger.global_search import GlobalSearch
from ledger.it_requests import ITRequests
from ledger.operations_overview import OperationsOverview
from ledger.overview import Overview
from ledger.reads import TaskPage, decode_cursor, encode_cursor
from ledger.runtime_overview import RuntimeOverview
from ledger.ticket_agents import TicketAgents
from ledger.ticket_context import TicketContexts

__all__ = [
    "Actor",
    "BadRequest",
    "CreatedTask",
    "Ledger",
    "TaskPage",
    "Transition",
    "decode_cursor",
    "encode_cursor",
]


class Ledger(
    TicketAgents,
    ClientSessions,
    Approvals,
    ITRequests,
    TicketContexts,
    Dashboard,
    Overview,
    RuntimeOverview,
    OperationsOverview,
    AuditTrail,
    GlobalSearch,
    AgentConfigs,
):
    """Everything the API does to the ledger."""
