"""Property-based tests of the API against its own `/openapi.json` (schemathesis).

Every documented operation gets generated requests, valid and invalid ones, sent with
a real bearer token: each human role (viewer, operator, owner) for the task API, a
worker token for the worker protocol under `/api/agent/`, none for the probes. Every
schemathesis check runs on every response (as `--checks all`: no 5xx, documented
statuses, content types, headers and schemas, valid data accepted and invalid data
refused, auth enforced, ...), plus one of ours: each event of an event stream matches
the documented schema of one event. The coverage phase's cases (boundaries, a required
header left out, methods a path does not have) run for every operation and role too.

Random ids only ever reach the 404 branch, so part of the requests address resources
seeded through the API first (tasks in every lane, an IT request, artifacts, claimed
runs with their claim tokens, tickets and change requests), and part of the valid
bodies use the policy's real lane, provider, source and mutation-level names, which the
schema types only as names, and a seeded ticket's id.

Deterministic (derandomized) and small by default. `SCHEMATHESIS_MAX_EXAMPLES` sets the
examples per operation and role (e.g. 1000 for a soak run); `SCHEMATHESIS_SEED` swaps
the derandomized sequence for a seeded one, to explore other inputs reproducibly.

Schemathesis calls an ASGI app on its own event-loop thread and runs the app's lifespan
there (its pytest plugin ends it after every test; the next request starts it again).
The session `app` fixture's pool belongs to pytest's loop, so this module builds its own
app on the session database.
"""

import asyncio
import dataclasses
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID, uuid4

import hypothesis
import jsonschema
import pytest
import schemathesis
from conftest import JWT_SECRET, settings_for_tests
from event_stream import decoded_schema, parse_events
from hypothesis import HealthCheck
from hypothesis import strategies as st
from schemathesis import GenerationMode, checks
from schemathesis.generation.meta import CoverageScenario
from schemathesis.python import asgi
from schemathesis.schemas import ParameterLocation
from starlette.applications import Starlette

from api.app import ENDPOINTS, create_app
from api.auth import mint_token
from api.openapi import build_openapi
from ledger.database import close_pool, create_pool
from ledger.policy import load_policy
from ledger.repository import Actor, Ledger
from worker.executors import load_sdk

MAX_EXAMPLES = int(os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "15"))
SEED = int(os.environ["SCHEMATHESIS_SEED"]) if os.environ.get("SCHEMATHESIS_SEED") else None
# Per request; an event stream that has not ended by then is cut there.
REQUEST_TIMEOUT = 5.0
_POLICY = load_policy()
_DOCUMENT = build_openapi(ENDPOINTS, _POLICY)
STREAM_MEDIA_TYPE = "text/event-stream"
CLIENT_SESSIONS = "/api/v1/client-sessions"


def _stream_event_problems(schema: dict[str, Any], body: str) -> list[str]:
    """Each event of an event-stream body checked against the documented schema of one
    event (its $refs resolved in the document's components)."""
    rooted = {**decoded_schema(schema), "components": _DOCUMENT["components"]}
    validator = jsonschema.Draft202012Validator(rooted)
    return [
        f"event {event!r}: {error.message}"
        for event in parse_events(body)
        for error in validator.iter_errors(event)
    ]


def stream_events_conformance(ctx: Any, response: Any, case: Any) -> bool | None:
    """Every event of a 200 event stream, its data decoded, matches the schema
    documented for one event (schemathesis' own check reads data as text only)."""
    del ctx
    content = _DOCUMENT["paths"][case.operation.path][case.operation.method.lower()]["responses"]
    documented = content.get("200", {}).get("content", {}).get(STREAM_MEDIA_TYPE)
    if response.status_code != 200 or documented is None:
        return None
    schema = documented["schema"]
    problems = _stream_event_problems(schema, response.text)
    assert not problems, "\n".join(problems)
    return True


checks.load_all_checks()
# Every check schemathesis has (as `--checks all`), and the event streams' own.
CHECKS = [*checks.CHECKS.get_all(), stream_events_conformance]
WORKER_PROTOCOL = "/api/agent/"
# The agent runtime's routes about the calling session: its credential is the bearer.
AGENT = "agent"
HUMAN_ROLES = ("viewer", "operator", "owner")

# Body fields whose valid values the policy knows and the schema does not.
_NAMES: dict[str, list[str]] = {
    "lane": sorted(_POLICY.lanes),
    "model_provider": sorted(_POLICY.providers),
    "mutation_level": list(_POLICY.mutation_levels),
}
_NAME_LISTS: dict[str, list[str]] = {
    "lanes": sorted(_POLICY.lanes),
    "source_systems": sorted(_POLICY.sources),
}


def _operations() -> list[Any]:
    """(role, method, path) for every documented operation, from the same declarations
    `/openapi.json` is built from, so collection needs no database."""
    params = []
    for path, operations in _DOCUMENT["paths"].items():
        for method, operation in operations.items():
            if not operation["security"]:
                roles: tuple[str, ...] = ("anonymous",)
            elif operation["x-required-role"] == AGENT:
                roles = (AGENT,)
            elif path.startswith(WORKER_PROTOCOL):
                roles = ("worker",)
            else:
                roles = HUMAN_ROLES
            params.extend(
                pytest.param(role, method.upper(), path, id=f"{role} {method.upper()} {path}")
                for role in roles
            )
    return params


def _bearer(role: str, tenant: str) -> dict[str, str]:
    token = mint_token(JWT_SECRET, subject=f"schemathesis-{role}", roles=[role], tenant_id=tenant)
    return {"Authorization": f"Bearer {token}"}


@dataclass
class Seeded:
    """Resources of one tenant, made through the API before the generated requests."""

    tenant: str
    task_ids: list[str] = field(default_factory=list)
    request_numbers: list[str] = field(default_factory=list)
    artifacts: list[dict[str, str]] = field(default_factory=list)  # task_id, artifact_id
    claims: list[tuple[str, str]] = field(default_factory=list)  # run_id, claim token
    thread_ids: list[str] = field(default_factory=list)
    run_ids: list[str] = field(default_factory=list)  # settled thread runs
    approval_ids: list[str] = field(default_factory=list)
    session_ids: list[str] = field(default_factory=list)
    # Claimed sessions' credentials and the channels they see.
    credentials: list[str] = field(default_factory=list)
    channel_ids: list[str] = field(default_factory=list)
    # A client-side session of the role's own subject with an answered turn: its
    # response id and the tool call its model asked for.
    client_session_ids: list[str] = field(default_factory=list)
    response_ids: list[str] = field(default_factory=list)
    calls: list[dict[str, str]] = field(default_factory=list)
    # Tickets (one with an access request, its child ticket) and change requests,
    # pending ones of another requester than the roles' own.
    ticket_ids: list[str] = field(default_factory=list)
    change_ids: list[str] = field(default_factory=list)
    # The ticket's agent and the steering event the ticket's note made for it.
    agent_ids: list[str] = field(default_factory=list)
    steering_ids: list[str] = field(default_factory=list)

    def path_parameters(self, path: str) -> list[dict[str, Any]]:
        """Fixed path parameters addressing seeded resources, one dict per choice."""
        if path.startswith(CLIENT_SESSIONS + "/"):
            return [{"session_id": session_id} for session_id in self.client_session_ids]
        if "{event_id}" in path:
            return [
                {"agent_id": agent_id, "event_id": event_id}
                for agent_id, event_id in zip(self.agent_ids, self.steering_ids, strict=True)
            ]
        if "{agent_id}" in path:
            return [{"agent_id": agent_id} for agent_id in self.agent_ids]
        if "{change_id}" in path:
            return [{"change_id": change_id} for change_id in self.change_ids]
        if "{ticket_id}" in path:
            return [{"ticket_id": ticket_id} for ticket_id in self.ticket_ids]
        if "{approval_id}" in path:
            return [{"approval_id": approval_id} for approval_id in self.approval_ids]
        if "{run_id}" in path:
            return [{"run_id": run_id} for run_id in self.run_ids]
        if "{thread_id}" in path:
            return [{"thread_id": thread_id} for thread_id in self.thread_ids]
        if "{artifact_id}" in path:
            return list(self.artifacts)
        if "{task_id}" in path:
            return [{"task_id": task_id} for task_id in self.task_ids]
        if "{request_number}" in path:
            return [{"request_number": number} for number in self.request_numbers]
        if "{session_id}" in path:
            return [{"session_id": session_id} for session_id in self.session_ids]
        if "{channel}" in path:
            return [{"channel": channel_id} for channel_id in self.channel_ids]
        return []


@dataclass
class Workbench:
    schema: schemathesis.BaseSchema
    tenants: dict[str, Seeded]  # by role; "events" is a tenant nothing changes


def _seed(client: Any, tenant: str, *, run: bool, settle: bool = False) -> Seeded:
    """Tasks in every lane, one from an IT request, an agent session (its run cancelled,
    so that its stream ends), and with `run` one run in process (artifacts, a finished
    task). With `settle`, queued tasks are cancelled, so every task's event stream ends."""
    seeded = Seeded(tenant)
    owner = _bearer("owner", tenant)

    def post(url: str, body: dict[str, Any], expected: int = 201) -> dict[str, Any]:
        response = client.post(url, json=body, headers=owner, timeout=REQUEST_TIMEOUT)
        assert response.status_code == expected, (url, response.text)
        return response.json()

    number = f"ST-{uuid4().hex[:8]}"
    post("/api/it-requests", {"request_number": number, "title": "Disk full on db01"})
    seeded.request_numbers.append(number)
    bodies = [
        {"lane": "analysis", "title": "Summarise incident", "instructions": "Summarise."},
        {"lane": "change-nonprod", "title": "Resize", "instructions": "Resize the volume."},
        {
            "lane": "change-prod",
            "title": "Failover",
            "instructions": "Fail over db01.",
            "scope": {"rollback": "Fail back."},
        },
        {"lane": "change-prod", "title": "No rollback plan", "instructions": "Fail over."},
    ]
    for body in bodies:
        seeded.task_ids.append(post("/api/agents/tasks", body)["task"]["id"])
    created = post(f"/api/agents/tasks/from-it-request/{number}", {"lane": "analysis"})
    seeded.task_ids.append(created["task"]["id"])
    session_id = f"sess-{uuid4().hex[:8]}"
    message = {
        "session_id": session_id,
        "message": "Which runbook covers failover?",
        "tenant_id": tenant,
        "user_id": "schemathesis-owner",
    }
    # No worker runs here: the run is still queued after the wait, then cancelled.
    session_run = post("/api/v1/agents/process", message, expected=202)["run_id"]
    post(f"/api/agents/tasks/{session_run}/cancel", {}, expected=200)
    seeded.session_ids.append(session_id)
    if run:
        task_id = seeded.task_ids[0]
        artifacts = post(f"/api/agents/tasks/{task_id}/run", {}, expected=200)["artifacts"]
        seeded.artifacts = [
            {"task_id": task_id, "artifact_id": artifact["id"]} for artifact in artifacts
        ]
    _seed_tickets(client, seeded)
    if settle:
        for task_id in seeded.task_ids:
            response = client.get(
                f"/api/agents/tasks/{task_id}", headers=owner, timeout=REQUEST_TIMEOUT
            )
            if response.json()["task"]["status"] == "queued":
                post(f"/api/agents/tasks/{task_id}/cancel", {}, expected=200)
    return seeded


def _seed_tickets(client: Any, seeded: Seeded) -> None:
    """A ticket with an agent and a note that steers it, an access request (its child
    ticket and gate) and change requests of each kind of risk, requested by another
    subject than the roles' own so that an approval can pass; and the IT request's
    ticket."""
    requester = {
        "Authorization": "Bearer "
        + mint_token(
            JWT_SECRET,
            subject="schemathesis-requester",
            roles=["operator"],
            tenant_id=seeded.tenant,
        )
    }

    def post(url: str, body: dict[str, Any]) -> dict[str, Any]:
        response = client.post(url, json=body, headers=requester, timeout=REQUEST_TIMEOUT)
        assert response.status_code == 201, (url, response.text)
        return response.json()

    ticket = post("/api/tickets", {"title": "Phishing report", "priority": "P2"})["ticket"]
    url = f"/api/tickets/{ticket['id']}"
    agent = post(url + "/assign-agent", {"prompt": "Scope the recipients."})["agent"]
    post(url + "/notes", {"body": "Scoped recipients."})
    seeded.agent_ids.append(agent["id"])
    steering = client.get(f"/api/agents/{agent['id']}/steering", headers=requester)
    seeded.steering_ids += [event["id"] for event in steering.json()["events"]]
    access = post(
        url + "/access-request",
        {"resource": "repo demo/infra", "permission": "read", "assignment_group": "DevSecOps"},
    )["access_request"]
    seeded.ticket_ids += [ticket["id"], access["child_ticket_id"]]
    seeded.change_ids.append(access["change_id"])
    for risk in ("low", "high", "critical"):
        body = {"ticket_id": ticket["id"], "action": "block_url", "target": "x", "risk_level": risk}
        seeded.change_ids.append(post("/api/changes/request", body)["change"]["id"])


def _seed_thread_runs(client: Any, seeded: Seeded, database_url: str) -> None:
    """A thread whose run waits for a tool call's approval (so every new run of it is a
    409 and its approval request can be resolved), and a cancelled run of another thread
    (so its stream ends). The runs are started through the ledger: starting one over
    HTTP answers with its stream, which would not end here, where no worker runs."""
    owner = _bearer("owner", seeded.tenant)

    def post(url: str, body: dict[str, Any], expected: int) -> dict[str, Any]:
        response = client.post(url, json=body, headers=owner, timeout=REQUEST_TIMEOUT)
        assert response.status_code == expected, (url, response.text)
        return response.json()

    threads = [
        post("/api/v1/threads", {"agent_type": agent}, 201)["thread"]["id"]
        for agent in ("change-planner", "runbook-agent")
    ]
    propose = '#call propose_change {"summary": "resize", "change": "size=2"}'
    paused, cancelled = asyncio.run(
        _start_runs(
            database_url, seeded.tenant, zip(threads, (propose, "Which runbook?"), strict=True)
        )
    )
    post(f"/api/agents/tasks/{paused}/run", {}, 200)  # stops at the approval
    post(f"/api/v1/runs/{cancelled}/cancel", {}, 200)
    detail = client.get(f"/api/v1/runs/{paused}", headers=owner, timeout=REQUEST_TIMEOUT)
    [request] = detail.json()["approval_requests"]
    seeded.thread_ids.append(threads[0])
    seeded.run_ids.append(cancelled)
    seeded.approval_ids.append(request["id"])


async def _start_runs(
    database_url: str, tenant: str, messages: Iterable[tuple[str, str]]
) -> list[str]:
    pool = await create_pool(database_url)
    try:
        ledger = Ledger(pool, _POLICY)
        actor = Actor("schemathesis-owner", tenant, "owner")
        return [
            str((await ledger.start_run(actor, UUID(thread_id), message)).task.id)
            for thread_id, message in messages
        ]
    finally:
        await close_pool(pool)


def _seed_client_session(client: Any, seeded: Seeded, role: str) -> None:
    """A client-side session created by the role's own subject (a viewer's tenant: by
    its owner), whose first turn, run in process (no worker runs here), asked for a
    tool call: so generated steps can name a real response and a real call."""
    creator = _bearer("owner" if role == "viewer" else role, seeded.tenant)

    def post(url: str, body: dict[str, Any], expected: int) -> dict[str, Any]:
        response = client.post(url, json=body, headers=creator, timeout=REQUEST_TIMEOUT)
        assert response.status_code == expected, (url, response.text)
        return response.json()

    session = post(CLIENT_SESSIONS, {"agent_type": "incident-analyst"}, 201)
    url = f"{CLIENT_SESSIONS}/{session['id']}"
    turn = {"model": "offline", "input": '#call read_artifact {"name": "runbook.md"}'}
    step = post(url + "/inference", turn, 202)
    post(f"/api/agents/tasks/{step['task_id']}/run", {}, 200)
    answered = client.get(url, headers=creator, timeout=REQUEST_TIMEOUT).json()["steps"][0]
    seeded.client_session_ids.append(session["id"])
    seeded.response_ids.append(answered["output"]["response_id"])
    seeded.calls.extend(answered["output"]["tool_calls"])


def _use_seeded_references(body: dict[str, Any], seeded: Seeded, data: st.DataObject) -> None:
    """A client session's step names what exists only in the ledger (a response, the
    model's call), which no schema can enumerate: valid bodies name the seeded ones.
    The session's model some of the time (otherwise 409)."""
    if "previous_response_id" in body:
        body["previous_response_id"] = seeded.response_ids[0] if data.draw(st.booleans()) else None
    if "call_id" in body and seeded.calls:
        body.update(seeded.calls[0])
    if "model" in body and "input" in body and data.draw(st.booleans()):
        body["model"] = "offline"


def _claim_runs(client: Any, seeded: Seeded, count: int) -> None:
    worker = _bearer("worker", seeded.tenant)
    for _ in range(count):
        response = client.post(
            "/api/agent/tasks/claim-next", json={}, headers=worker, timeout=REQUEST_TIMEOUT
        )
        assert response.status_code == 200, response.text
        claim = response.json()["claim"]
        if claim is None:
            return
        seeded.claims.append((claim["run"]["id"], claim["claim_token"]))


def _claim_sessions(client: Any, seeded: Seeded) -> None:
    """Two claimed analysis runs' sessions, a message between them on the workspace's
    channel, and every channel they see."""
    worker = _bearer("worker", seeded.tenant)
    body = {"lane": "analysis", "title": "Talk", "instructions": "Talk."}
    for _ in range(2):
        created = client.post(
            "/api/agents/tasks", json=body, headers=_bearer("owner", seeded.tenant)
        )
        assert created.status_code == 201, created.text
        response = client.post(
            "/api/agent/tasks/claim-next",
            json={"lanes": ["analysis"]},
            headers=worker,
            timeout=REQUEST_TIMEOUT,
        )
        claim = response.json()["claim"]
        seeded.claims.append((claim["run"]["id"], claim["claim_token"]))
        seeded.credentials.append(claim["session_credential"])
    sender = {"Authorization": f"Bearer {seeded.credentials[0]}"}
    channels = client.get("/api/agent/channels", headers=sender).json()["channels"]
    seeded.channel_ids = [channel["id"] for channel in channels]
    room = next(channel["id"] for channel in channels if channel["channel"] == "ops-room")
    message = {"body": "hello", "metadata": {"message_kind": "status"}}
    sent = client.post(f"/api/agent/channels/{room}/send", json=message, headers=sender)
    assert sent.status_code == 200, sent.text


def _agent_auth(workbench: "Workbench") -> dict[str, str]:
    """The agent tenant's first session's credential, its lease renewed first: the
    module runs for longer than a lease."""
    seeded = workbench.tenants[AGENT]
    worker = _bearer("worker", seeded.tenant)
    with asgi.get_client(workbench.schema.app) as client:
        for run_id, token in seeded.claims:
            beat = client.post(
                f"/api/agent/tasks/{run_id}/heartbeat",
                json={},
                headers={**worker, "X-Claim-Token": token},
                timeout=REQUEST_TIMEOUT,
            )
            assert beat.status_code == 200, beat.text
    return {"Authorization": f"Bearer {seeded.credentials[0]}"}


def _as_served(app: Starlette) -> Any:
    """The app as a server runs it: an unhandled error before the response leaves as the
    app's JSON 500 (which `not_a_server_error` reports with a curl line) and is not raised
    again into the test. An error after a response started (an event stream that breaks
    mid-way) has no 500 to show for it, so it is raised and fails the test."""

    async def served(scope: Any, receive: Any, send: Any) -> None:
        status: int | None = None

        async def tracking_send(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await app(scope, receive, tracking_send)
        except Exception:
            if scope["type"] != "http" or status is None or status < 500:
                raise

    return served


@pytest.fixture(scope="module")
def workbench(database_url: str, artifact_dir) -> Iterator[Workbench]:
    # schemathesis' pytest plugin ends every ASGI lifespan after each test and the next
    # request starts it again, so the environment it reads must hold for the whole module.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("WORKBENCH_ARTIFACT_DIR", str(artifact_dir))
        # The providers' model names, as a deployment configures them: a client session
        # for a provider whose model is named nowhere must name it (400 otherwise).
        patch.setenv("AZURE_OPENAI_DEPLOYMENT", "gpt-4o-workbench")
        patch.setenv("WORKBENCH_COMPATIBLE_MODEL", "llama-3.1-8b")
        # No worker runs here: a message's run is still queued after the wait, which
        # must be well within a request's timeout.
        # A long-polling recv waits as briefly.
        settings = dataclasses.replace(
            settings_for_tests(), process_wait_seconds=0.2, recv_wait_seconds=0.2
        )
        # The seeding runs tasks in process; the first run's import of the agents SDK
        # took longer than a request's timeout on a busy machine: import it first.
        load_sdk()
        application: Starlette = create_app(settings, database_url=database_url)
        try:
            schema = schemathesis.openapi.from_asgi("/openapi.json", _as_served(application))
            suffix = uuid4().hex[:8]
            with asgi.get_client(schema.app) as client:
                tenants = {
                    role: _seed(client, f"schemathesis-{role}-{suffix}", run=True)
                    for role in HUMAN_ROLES
                }
                for role in HUMAN_ROLES:
                    _seed_thread_runs(client, tenants[role], database_url)
                    _seed_client_session(client, tenants[role], role)
                # Event streams end only once their task stops moving; nothing else acts here.
                tenants["events"] = _seed(
                    client, f"schemathesis-events-{suffix}", run=True, settle=True
                )
                tenants["worker"] = _seed(client, f"schemathesis-worker-{suffix}", run=False)
                _claim_runs(client, tenants["worker"], count=3)
                tenants[AGENT] = _seed(client, f"schemathesis-agent-{suffix}", run=False)
                _claim_sessions(client, tenants[AGENT])
            yield Workbench(schema, tenants)
        finally:
            asgi.shutdown_lifespans()


def _strategies(operation: Any, role: str, seeded: Seeded | None) -> list[Any]:
    """Generated and seeded-resource cases, valid and invalid, each tagged with its mode."""
    fixed: list[dict[str, Any]] = [{}]
    if seeded and operation.path.startswith(WORKER_PROTOCOL + "tasks/{run_id}"):
        # The claim token travels in X-Claim-Token, which the document does not declare.
        fixed += [
            {"path_parameters": {"run_id": run_id}, "headers": {"X-Claim-Token": token}}
            for run_id, token in seeded.claims
        ]
    elif seeded:
        fixed += [{"path_parameters": params} for params in seeded.path_parameters(operation.path)]
    has_input = bool(operation.body) or any(True for _ in operation.iter_parameters())
    modes = [GenerationMode.POSITIVE] + ([GenerationMode.NEGATIVE] if has_input else [])
    return [
        st.tuples(
            st.just(mode),
            operation.as_strategy(mode, **choice),
        )
        for mode in modes
        for choice in fixed
    ]


def _use_policy_names(body: dict[str, Any], data: st.DataObject, caller: dict[str, str]) -> None:
    """Swaps generated names for the policy's real ones, and the identity a body claims
    for the caller's own, some of the time."""
    for name, value in caller.items():
        if name in body and data.draw(st.booleans()):
            body[name] = value
    for name, values in _NAMES.items():
        if name in body and data.draw(st.booleans()):
            body[name] = data.draw(st.sampled_from(values))
    for name, values in _NAME_LISTS.items():
        if isinstance(body.get(name), list) and data.draw(st.booleans()):
            body[name] = data.draw(st.lists(st.sampled_from(values), max_size=3, unique=True))


@pytest.mark.parametrize(("role", "method", "path"), _operations())
def test_operation_conforms_to_its_schema(
    workbench: Workbench, role: str, method: str, path: str
) -> None:
    operation = workbench.schema[path][method]
    tenant = "events" if path.endswith("/events") else role
    seeded = None if role == "anonymous" else workbench.tenants[tenant]
    auth = _bearer(role, seeded.tenant) if seeded else {}
    if role == AGENT:
        auth = _agent_auth(workbench)

    @hypothesis.settings(
        max_examples=MAX_EXAMPLES,
        derandomize=SEED is None,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    @hypothesis.given(tagged=st.one_of(_strategies(operation, role, seeded)), data=st.data())
    def check(tagged: tuple[GenerationMode, Any], data: st.DataObject) -> None:
        mode, case = tagged
        if mode is GenerationMode.POSITIVE and isinstance(case.body, dict):
            caller = (
                {"tenant_id": seeded.tenant, "user_id": f"schemathesis-{role}"} if seeded else {}
            )
            if seeded and seeded.ticket_ids:
                caller["ticket_id"] = seeded.ticket_ids[0]
            _use_policy_names(case.body, data, caller)
            if seeded and case.operation.path.startswith(CLIENT_SESSIONS + "/"):
                _use_seeded_references(case.body, seeded, data)
        _call_and_validate(case, auth)

    (check if SEED is None else hypothesis.seed(SEED)(check))()


def _call_and_validate(case: Any, auth: dict[str, str]) -> None:
    # The bearer token goes in as the caller's own headers, not as generated data, so
    # ignored_auth knows it for real credentials and tries the request without them. A
    # negative case with invalid headers is sent with its own: the invalid part may be
    # the Authorization header itself (left out, or malformed), and replacing it with
    # the token would make a valid request that must be accepted.
    headers = case.meta.components.get(ParameterLocation.HEADER) if case.meta else None
    if headers is not None and headers.mode is GenerationMode.NEGATIVE:
        auth = {}
    case.call_and_validate(
        checks=CHECKS,
        headers=auth,
        timeout=REQUEST_TIMEOUT,
    )


@pytest.mark.parametrize(("role", "method", "path"), _operations())
def test_operation_coverage_cases(workbench: Workbench, role: str, method: str, path: str) -> None:
    """schemathesis' coverage phase for the operation: each parameter's boundaries, a
    required header left out, methods the path does not have. Only these cases exercise
    missing_required_header and unsupported_method."""
    operation = workbench.schema[path][method]
    tenant = "events" if path.endswith("/events") else role
    auth = {} if role == "anonymous" else _bearer(role, workbench.tenants[tenant].tenant)
    if role == AGENT:
        auth = _agent_auth(workbench)
    # schemathesis sends each path's unsupported methods once per schema; here once per
    # operation and role.
    workbench.schema.coverage_unexpected_methods_seen.clear()
    generation = workbench.schema.config.generation_for(operation=operation, phase="coverage")
    cases = workbench.schema.iter_coverage_cases(
        operation,
        generation_modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
        generation_config=generation,
    )
    scenarios = set()
    for case in cases:
        scenarios.add(case.meta.phase.data.scenario)
        _call_and_validate(case, auth)
    assert CoverageScenario.UNSPECIFIED_HTTP_METHOD in scenarios


def test_stream_check_fails_on_an_event_its_schema_refuses() -> None:
    schema = {
        "type": "object",
        "required": ["event", "data"],
        "properties": {
            "event": {"enum": ["status", "done"]},
            "id": {"type": "string", "pattern": "^[0-9]+$"},
            "data": {
                "type": "string",
                "contentMediaType": "application/json",
                "contentSchema": {
                    "type": "object",
                    "required": ["seq"],
                    "properties": {"seq": {"type": "integer"}},
                },
            },
        },
    }
    conforming = (
        'id: 1\nevent: status\ndata: {"seq": 1}\n\n: keepalive\n\nevent: done\ndata: {"seq": 2}\n\n'
    )
    assert _stream_event_problems(schema, conforming) == []
    violating = 'id: x\nevent: status\ndata: {"seq": "one"}\n\n'
    problems = _stream_event_problems(schema, violating)
    assert len(problems) == 2, problems  # the id's pattern and the data's seq type
