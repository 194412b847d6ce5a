"""The state machine is written once, in `ledger/states.py`, and the SQL agrees with it.

Every status literal left in `queries/*.sql`, and every status the migrated database
names (CHECK constraints, partial-index predicates, trigger conditions, functions), is
a member of its enum, and each CHECK allows exactly its enum. The statuses of every
transition reach the SQL as parameters from `TRANSITIONS`; a literal is left only
where a partial index needs it, where it is what a fence means, or where a new run is
made, and there it must say what the table says.
"""

import re
from collections import defaultdict
from collections.abc import Iterator
from typing import get_args

from conftest import fast_policy

from ledger.attempts import move_all_locked
from ledger.change_models import ChangeStatus
from ledger.leases import Leases
from ledger.models import ApprovalStatus, TaskCreateRequest
from ledger.redaction import Redactor
from ledger.repository import Actor, Ledger
from ledger.session_steps import SESSION_COMPLETED, ClientSessionStatus
from ledger.sql import queries
from ledger.states import TRANSITIONS, RunStatus, TaskStatus
from ledger.ticket_workflow import AWAITING_USER_RESPONSE, TICKET_STATUSES

OPERATOR = Actor("olga", "t1", "operator")
TASK_STATUSES = {str(status) for status in TaskStatus}
RUN_STATUSES = {str(status) for status in RunStatus}
# The phase of a task (migration 0008) is its status, or `active` for the statuses on
# the way to a worker.
PHASES = TASK_STATUSES | {"active"}
APPROVAL_STATUSES = set(get_args(ApprovalStatus))
SESSION_STATUSES = set(get_args(ClientSessionStatus))
CHANGE_STATUSES = set(get_args(ChangeStatus))
ENUM_OF = {
    "tasks": TASK_STATUSES,
    "runs": RUN_STATUSES,
    "trace_events": TASK_STATUSES,
    "approval_requests": APPROVAL_STATUSES,
    "tickets": set(TICKET_STATUSES),
    "change_requests": CHANGE_STATUSES,
    "change_requests_now": CHANGE_STATUSES,
}

_TABLE = re.compile(
    r"\b(?:FROM|JOIN|UPDATE|INTO)\s+"
    r"(tasks|runs|trace_events|approval_requests|tickets|change_requests_now|change_requests)\b"
    r"(?:\s+(?:AS\s+)?(\w+))?"
)
_COMPARED = re.compile(
    r"\b(?:(\w+)\.)?(status|phase|from_status|to_status)\s*(?:=|<>|!=)\s*'([^']*)'"
)
_IN_LIST = re.compile(r"\b(?:(\w+)\.)?(status|phase)\s+(?:NOT\s+)?IN\s*\(([^)]*)\)")
_INSERT = re.compile(r"\bINSERT\s+INTO\s+(\w+)\s*\(([^)]*)\)\s*(VALUES|SELECT)\b")
_KEYWORDS = {
    "WHERE",
    "SET",
    "ON",
    "JOIN",
    "FROM",
    "ORDER",
    "LIMIT",
    "FOR",
    "USING",
    "GROUP",
    "VALUES",
    "SELECT",
    "RETURNING",
    "CROSS",
    "LEFT",
}


def _without_comments(sql: str) -> str:
    return re.sub(r"--[^\n]*", "", sql)


def _split_top_level(text: str) -> list[str]:
    """Split at the commas outside parentheses."""
    parts, depth, start = [], 0, 0
    for i, char in enumerate(text):
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    parts.append(text[start:].strip())
    return parts


def _balanced(text: str, start: int) -> str:
    """The text inside the parentheses that open at `start`."""
    depth = 0
    for i in range(start, len(text)):
        depth += {"(": 1, ")": -1}.get(text[i], 0)
        if depth == 0:
            return text[start + 1 : i]
    raise AssertionError(f"unbalanced parentheses: {text[start:]}")


def _select_list(text: str) -> str:
    """The expressions of a SELECT, up to its FROM at the top level."""
    depth = 0
    for i, char in enumerate(text):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth == 0 and re.match(r"\s+FROM\b", text[i:]):
            return text[: i + 1]
    return text


def _table_at(sql: str, position: int, alias: str | None) -> str:
    """The table a status column at `position` belongs to: by its alias, or else the
    table named last before it."""
    aliases = {}
    last = None
    for match in _TABLE.finditer(sql):
        table, name = match.group(1), match.group(2)
        aliases[table] = table
        if name and name.upper() not in _KEYWORDS:
            aliases[name] = table
        if match.start() < position:
            last = table
    if alias in aliases:
        return aliases[alias]
    assert last is not None, f"no table before the status at {position}: {sql[:80]}"
    return last


def status_literals(sql: str) -> Iterator[tuple[str, str, str]]:
    """(table, column, literal) for every status literal in one statement."""
    sql = _without_comments(sql)
    for match in _COMPARED.finditer(sql):
        alias, column, literal = match.groups()
        table = (
            "trace_events" if column.endswith("_status") else _table_at(sql, match.start(), alias)
        )
        yield table, column, literal
    for match in _IN_LIST.finditer(sql):
        alias, column, listed = match.groups()
        table = _table_at(sql, match.start(), alias)
        for literal in re.findall(r"'([^']*)'", listed):
            yield table, column, literal
    for match in _INSERT.finditer(sql):
        table, columns = match.group(1), _split_top_level(match.group(2))
        rest = sql[match.end() :]
        if match.group(3) == "VALUES":
            values = _split_top_level(_balanced(rest, rest.index("(")))
        else:
            values = _split_top_level(_select_list(rest))
        assert len(values) == len(columns), f"cannot align the INSERT INTO {table}: {sql}"
        for column, value in zip(columns, values, strict=True):
            literal = re.fullmatch(r"'([^']*)'(?:::text)?", value)
            if column in ("status", "from_status", "to_status") and literal:
                yield table, column, literal.group(1)


def _found() -> dict[str, set[tuple[str, str]]]:
    """Per named query, its (table, status) literals."""
    found: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for name, sql in queries().items():
        for table, _, literal in status_literals(sql):
            found[name].add((table, literal))
    return found


def test_every_status_literal_in_the_queries_is_in_its_enum() -> None:
    wrong = [
        (name, table, literal)
        for name, sql in queries().items()
        for table, column, literal in status_literals(sql)
        if literal not in (PHASES if column == "phase" else ENUM_OF[table])
    ]
    assert wrong == []


def _rule(action: str, *, tasks: bool = True, runs: bool = True) -> set[tuple[str, str]]:
    rule = TRANSITIONS[action]
    statuses = set()
    if tasks:
        statuses |= {("tasks", str(s)) for s in rule.task_from}
    if runs:
        statuses |= {("runs", str(s)) for s in rule.run_from}
    return statuses


# The queries that keep a literal, and what the table says it must be.
KEPT_LITERALS: dict[str, set[tuple[str, str]]] = {
    # The predicates of the partial indexes runs_running and runs_dispatched.
    "expired_leases": _rule("reap", tasks=False),
    "stale_dispatches": _rule("dispatch_timeout", tasks=False),
    # The outbox's batch reads the runs_due index (its predicate names the status).
    "lock_due_runs": _rule("dispatch"),
    "lock_task_run": _rule("dispatch"),
    # A fence holds only a run in the `hold` statuses; a session's credential works
    # only while its claim holds the run.
    **{
        name: _rule("hold", tasks=False)
        for name in (
            "heartbeat_if_owner",
            "runs_held",
            "saved_state_if_owner",
            "record_usage_if_owner",
            "insert_artifacts_if_owner",
            "session_by_credential",
            "peer_sessions",
            "spawned_children",
            "console_agent_sessions",
            "console_agent_session",
            "console_session_tree",
            # A steering note reaches, and is acknowledged by, the claim holding the run.
            "deliver_steering_if_holder",
            "acknowledge_steering_if_holder",
            # The dashboard counts the sessions whose claim holds their run.
            "dashboard_active_sessions",
        )
    },
    # A new run is always queued.
    "insert_task": {("runs", str(TRANSITIONS["create"].run_to))},
    "insert_run": {("runs", str(TRANSITIONS["approve"].run_to))},
    # Gauges: the runs waiting to be claimed, the tasks waiting for an operator.
    "lane_backlog": _rule("claim", tasks=False),
    "approvals_waiting": {("tasks", str(TaskStatus.AWAITING_APPROVAL))},
    # An approval request is decided once, from pending: its own small life, not a rule
    # of the task's state machine.
    "settle_approval_requests": {("approval_requests", "pending")},
    # The same status, read: the requests still waiting, repeating the partial index.
    "task_approval_requests": {("approval_requests", "pending")},
    # The console's reads (ledger/overview.py), repeating the partial indexes'
    # predicates as the gauges do: the tenant's unfinished runs per lane, the workers
    # holding its running runs, its tasks and tool calls waiting for a decision.
    "tenant_lane_backlog": _rule("claim", tasks=False)
    | {("runs", str(RunStatus.RUNNING)), ("runs", str(RunStatus.PAUSED))},
    "tenant_workers": _rule("hold", tasks=False),
    # Runner health: the workers seen per lane are those holding running runs.
    "lane_workers_seen": _rule("hold", tasks=False),
    "tasks_awaiting_approval": {("tasks", str(TaskStatus.AWAITING_APPROVAL))},
    "pending_approval_requests": {("approval_requests", "pending")},
    # A ticket waiting for its requester's answer is what a user response restores.
    "restore_ticket_status": {("tickets", AWAITING_USER_RESPONSE)},
    # A change request's own small life (ledger/changes.py says who moves it out of each
    # status), like an approval request's; the pending reads repeat the partial index
    # change_requests_pending.
    "insert_change_request": {("change_requests", "pending")},
    "pending_changes": {("change_requests", "pending")},
    "dashboard_pending_changes": {("change_requests", "pending")},
    "dashboard_pending_change_count": {("change_requests", "pending")},
    "changes_due_to_expire": {("change_requests", "pending")},
    "approved_change_for_target": {("change_requests", "approved")},
    "agent_change_for_target": {
        ("change_requests_now", "pending"),
        ("change_requests_now", "approved"),
        ("change_requests_now", "rejected"),
        ("change_requests_now", "completed"),
    },
    "approve_change": {("change_requests", "pending")},
    "reject_change": {("change_requests", "pending"), ("change_requests", "rejected")},
    "complete_change": {("change_requests", "approved"), ("change_requests", "completed")},
    "expire_change": {("change_requests", "pending"), ("change_requests", "expired")},
    # An access request is granted once its gate is approved (or carried out since).
    "ticket_access_requests": {
        ("change_requests_now", "approved"),
        ("change_requests_now", "completed"),
    },
    "get_access_request": {
        ("change_requests_now", "approved"),
        ("change_requests_now", "completed"),
    },
}


def test_a_status_literal_is_kept_only_where_the_table_says_so() -> None:
    found = {name: literals for name, literals in _found().items() if literals}
    assert {name: found[name] for name in found if name not in KEPT_LITERALS} == {}, (
        "pass these statuses from TRANSITIONS, or say here why the literal stays"
    )
    assert {name: found.get(name, set()) for name in KEPT_LITERALS if name in queries()} == {
        name: expected for name, expected in KEPT_LITERALS.items() if name in queries()
    }


def test_the_literal_finder_sees_each_form() -> None:
    sql = """
        WITH x AS (UPDATE runs r SET status = 'lost' WHERE r.status IN ('running', 'x'))
        INSERT INTO trace_events (task_id, kind, from_status, to_status)
        SELECT t.id, 'k', 'queued', coalesce(t.status, 'y') FROM tasks t
        WHERE t.status <> 'denied'
    """
    assert sorted(status_literals(sql)) == [
        ("runs", "status", "lost"),
        ("runs", "status", "running"),
        ("runs", "status", "x"),
        ("tasks", "status", "denied"),
        ("trace_events", "from_status", "queued"),
    ]


async def _check_sets(connection) -> dict[tuple[str, str], set[str]]:
    rows = await connection.fetch(
        """SELECT conrelid::regclass::text AS table_name, conname,
                  pg_get_constraintdef(oid) AS definition
           FROM pg_constraint
           WHERE contype = 'c' AND connamespace = 'public'::regnamespace"""
    )
    return {
        (row["table_name"], row["conname"]): set(re.findall(r"'([^']*)'", row["definition"]))
        for row in rows
        if re.search(r"\bstatus\b", row["definition"])
    }


async def test_every_check_constraint_allows_exactly_its_enum(pool) -> None:
    async with pool.acquire() as connection:
        checks = await _check_sets(connection)
    assert checks == {
        ("tasks", "tasks_status_check"): TASK_STATUSES,
        ("runs", "runs_status_check"): RUN_STATUSES,
        ("approval_requests", "approval_requests_status_check"): APPROVAL_STATUSES,
        ("client_sessions", "client_sessions_status_check"): SESSION_STATUSES,
        # completed_at is set exactly when the session is completed.
        ("client_sessions", "client_sessions_completed_at"): {SESSION_COMPLETED},
        ("change_requests", "change_requests_status_check"): CHANGE_STATUSES,
        ("tickets", "tickets_status_check"): set(TICKET_STATUSES),
    }


async def test_every_status_the_schema_names_is_in_its_enum(pool) -> None:
    async with pool.acquire() as connection:
        predicates = await connection.fetch(
            """SELECT c.relname AS index_name, t.relname AS table_name,
                      pg_get_expr(i.indpred, i.indrelid) AS predicate
               FROM pg_index i
               JOIN pg_class c ON c.oid = i.indexrelid
               JOIN pg_class t ON t.oid = i.indrelid
               WHERE i.indpred IS NOT NULL AND t.relname IN ('tasks', 'runs')"""
        )
        triggers = await connection.fetch(
            """SELECT tgname, pg_get_triggerdef(oid) AS definition FROM pg_trigger
               WHERE tgrelid = 'runs'::regclass AND NOT tgisinternal"""
        )
        phase = await connection.fetchval(
            "SELECT pg_get_functiondef('task_phase(text)'::regprocedure)"
        )
    named = defaultdict(set)
    for row in predicates:
        if "status" in row["predicate"] or "phase" in row["predicate"]:
            named[row["table_name"]] |= set(re.findall(r"'([^']*)'", row["predicate"]))
    for row in triggers:
        named["runs"] |= set(re.findall(r"'([^']*)'", row["definition"]))
    assert named["runs"] and named["tasks"]  # what the checks below look at
    assert named["runs"] <= RUN_STATUSES
    assert named["tasks"] <= PHASES
    assert set(re.findall(r"'([^']*)'", phase)) <= PHASES


async def _queued_task(ledger: Ledger):
    request = TaskCreateRequest(lane="analysis", title="t", instructions="x")
    return (await ledger.create_task(OPERATOR, request)).task


async def test_a_task_not_where_the_move_expects_is_not_moved(pool) -> None:
    """The move's own statement keeps the guard: a caller that locked a task thinking
    it was running moves nothing and writes no event when it is queued."""
    policy = fast_policy()
    ledger = Ledger(pool, policy)
    task = await _queued_task(ledger)
    async with pool.acquire() as connection, connection.transaction():
        locked = await connection.fetchrow("SELECT * FROM tasks WHERE id = $1 FOR UPDATE", task.id)
        moved = await move_all_locked(
            connection,
            Redactor(policy.secret_keys),
            [locked],
            TRANSITIONS["release"],
            kind="released",
            actors=["w1"],
            messages=["released"],
            data=[{}],
        )
    assert moved == []
    assert (await ledger.get_task("t1", task.id)).status == "queued"
    assert [e.kind for e in await ledger.list_traces("t1", task.id)] == [
        "created",
        "policy_verdict",
    ]


async def test_cancel_ends_a_paused_run(pool) -> None:
    """A run paused at a tool call is not left paused when its task is cancelled."""
    policy = fast_policy()
    ledger, leases = Ledger(pool, policy), Leases(pool, policy)
    task = await _queued_task(ledger)
    claim = await leases.claim(
        task_id=task.id, run_id=task.current_run_id, attempt=1, worker="w1", via="test"
    )
    pending = {
        "tool": "write_artifact",
        "call_id": "call_1",
        "arguments": {"name": "a.txt"},
        "arguments_sha256": "0" * 64,
    }
    await leases.pause(claim.fence, worker="w1", saved_state="{}", pending=pending)
    await ledger.cancel(OPERATOR, task.id, reason="not needed")
    run = await ledger.get_run("t1", task.current_run_id)
    assert (run.status, run.error) == ("cancelled", "cancelled by olga: not needed")
