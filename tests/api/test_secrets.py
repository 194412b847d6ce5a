"""No secret value leaves the backend: not in responses, traces, the live stream,
artifacts, ledger rows or log lines, whichever field carried it and whichever form it
was written in (tests/planted_secrets.py lists the forms)."""

import asyncio
import json

import httpx
import structlog
from planted_secrets import SECRETS, WRITTEN_FORMS, forms_text, leaked

from cli.logs import configure_logging
from ledger.policy import load_policy
from ledger.redaction import Redactor

TASKS = "/api/agents/tasks"
LEDGER_TABLES = (
    "tasks",
    "runs",
    "trace_events",
    "artifacts",
    "it_requests",
    "threads",
    "thread_messages",
    "approval_requests",
    "agent_sessions",
    "coordination_channels",
    "channel_messages",
    "client_sessions",
    "tickets",
    "ticket_notes",
    "ticket_attachments",
    "change_requests",
    "access_requests",
    "audit_records",
    "ticket_agents",
    "ticket_agent_tasks",
    "steering_events",
)
AGENTS = "/api/v1/agents"
SESSIONS = "/api/v1/client-sessions"


def _chunks(size: int) -> list[str]:
    """The forms in texts of at most `size` characters (reasons are bounded)."""
    chunks, current = [], ""
    for name, text, _ in WRITTEN_FORMS:
        line = f"{name}: {text}\n"
        if current and len(current) + len(line) > size:
            chunks.append(current)
            current = ""
        current += line
    chunks.append(current)
    assert len(chunks) >= 3
    return chunks


async def test_planted_secrets_never_come_back(http, auth, new_task, pool, tenant) -> None:
    reasons = _chunks(700)
    every_form = forms_text()
    # A tool call whose arguments carry the forms, and whose artifact holds them (all
    # but the last, a key block cut short, which is redacted to the end of the text).
    call = json.dumps({"name": "notes.txt", "content": forms_text(WRITTEN_FORMS[:-1])})
    analysis = await new_task(
        title=f"Rotate {WRITTEN_FORMS[0][1]} now",
        instructions=f"Summarise.\n#call write_artifact {call}\n{every_form}",
        scope={
            "notes": every_form,
            "config": json.dumps({"db": {"password": "hunter2-json", "host": "db"}}),
            "forms": {name: text for name, text, _ in WRITTEN_FORMS},
            "input_tokens": 12,
        },
    )
    task_id = analysis["task"]["id"]
    assert analysis["task"]["scope"]["input_tokens"] == 12  # a count, not a secret
    assert json.loads(analysis["task"]["scope"]["config"])["db"]["host"] == "db"
    ran = await http.post(f"{TASKS}/{task_id}/run", headers=auth())
    assert ran.json()["status"] == "succeeded", ran.text
    transitions = [
        await http.post(f"{TASKS}/{task_id}/retry", json={"reason": reasons[0]}, headers=auth()),
        await http.post(f"{TASKS}/{task_id}/cancel", json={"reason": reasons[1]}, headers=auth()),
        await http.post(
            f"{TASKS}/{task_id}/rollback",
            json={"reason": reasons[2], "remediation": every_form},
            headers=auth(),
        ),
    ]
    review = {"lane": "change-prod", "mutation_level": "write_prod", "scope": {"rollback": "x"}}
    approved = (await new_task(**review))["task"]["id"]
    rejected = (await new_task(**review))["task"]["id"]
    transitions += [
        await http.post(
            f"{TASKS}/{approved}/approve", json={"reason": reasons[-1]}, headers=auth()
        ),
        await http.post(f"{TASKS}/{rejected}/reject", json={"reason": reasons[0]}, headers=auth()),
        # Settled, so that its event stream ends.
        await http.post(f"{TASKS}/{approved}/cancel", json={"reason": reasons[1]}, headers=auth()),
    ]
    assert [response.status_code for response in transitions] == [200] * 6
    itr = await http.post(
        "/api/it-requests",
        json={
            "request_number": f"REQ-{tenant}",
            "title": "Access for the payments DB",
            "description": every_form,
            "details": {"form": every_form, "db_password": "hunter2-details"},
        },
        headers=auth(),
    )
    assert itr.status_code == 201, itr.text
    thread = await http.post(
        "/api/v1/threads",
        json={
            "agent_type": "it-router",
            "title": f"Rotate {WRITTEN_FORMS[0][1]} now",
            "metadata": {"notes": every_form, "api_key": "hunter2-metadata"},
        },
        headers=auth(),
    )
    assert thread.status_code == 201, thread.text
    thread_url = f"/api/v1/threads/{thread.json()['thread']['id']}"
    runs = await _thread_runs(http, auth, every_form, reasons)
    session = await _session_texts(http, auth, tenant, every_form)
    session |= await _agent_runtime_texts(http, auth, every_form)
    session |= await _client_session_texts(http, auth, every_form)
    session |= await _ticket_texts(http, auth, every_form, reasons)

    texts = {
        **session,
        "create": json.dumps(analysis),
        "run": ran.text,
        "itr": itr.text,
        "list": (await http.get(TASKS, headers=auth())).text,
        "itr read": (await http.get(f"/api/it-requests/REQ-{tenant}", headers=auth())).text,
        "thread": thread.text,
        "thread read": (await http.get(thread_url, headers=auth())).text,
        "threads": (await http.get("/api/v1/threads", headers=auth())).text,
        "audit feed": (await http.get("/api/dashboard/audit?limit=200", headers=auth())).text,
        "audit verify": (await http.get("/api/audit/verify", headers=auth())).text,
        "dashboard stats": (await http.get("/api/dashboard/stats", headers=auth())).text,
    }
    # Every word of every form, searched for: what matches shows only redacted text.
    for name, text, _ in WRITTEN_FORMS:
        found = await http.get("/api/search/global", params={"q": text[:200]}, headers=auth())
        texts[f"search for the {name} form"] = found.text
    texts |= {f"transition {n}": response.text for n, response in enumerate(transitions)}
    texts |= runs
    for each in (task_id, approved, rejected):
        url = f"{TASKS}/{each}"
        texts[f"task {each}"] = (await http.get(url, headers=auth())).text
        texts[f"traces {each}"] = (await http.get(f"{url}/traces", headers=auth())).text
        texts[f"stream {each}"] = (await http.get(f"{url}/events", headers=auth())).text
        listing = await http.get(f"{url}/artifacts", headers=auth())
        texts[f"artifacts {each}"] = listing.text
        for artifact in listing.json()["artifacts"]:
            content = await http.get(artifact["download_url"], headers=auth())
            texts[f"{artifact['name']} of {each}"] = content.text
    assert "notes.txt of " + task_id in texts  # the tool call ran and left its artifact
    assert "[redacted]" in texts["notes.txt of " + task_id]
    assert "secrets_redacted" in texts[f"traces {task_id}"]
    for where, text in texts.items():
        assert leaked(text) == [], f"leaked in the {where} response"
        assert "hunter2-metadata" not in text, where

    async with pool.acquire() as connection:
        for table in LEDGER_TABLES:
            rows = await connection.fetch(
                f"SELECT t::text AS row FROM {table} t WHERE tenant_id = $1",  # noqa: S608
                tenant,
            )
            assert rows, table
            for row in rows:
                assert leaked(row["row"]) == [], f"stored in {table}"


async def _ticket_texts(http, auth, every_form: str, reasons: list[str]) -> dict[str, str]:
    """A ticket, its notes, attachment, status changes, assignment, question and answer,
    change requests decided every way and an access request, each field that takes text
    carrying the forms; and what the ticket, change and provider routes then return."""
    yaml_form = "password: hunter2-yaml"
    created = await http.post(
        "/api/tickets",
        json={
            "title": f"Rotate {WRITTEN_FORMS[0][1]} now",
            "description": every_form,
            "created_by": yaml_form,
        },
        headers=auth(),
    )
    assert created.status_code == 201, created.text
    url = f"/api/tickets/{created.json()['ticket']['id']}"
    ticket_id = created.json()["ticket"]["id"]
    sas = "https://a.blob.core.windows.net/c?sv=2024&sig=hunter2%2Bsas"
    assigned = await http.post(
        url + "/assign-agent", json={"prompt": every_form[:20_000]}, headers=auth()
    )
    writes = [
        created,
        assigned,
        await http.post(
            url + "/notes", json={"body": every_form, "author": yaml_form}, headers=auth()
        ),
        await http.post(
            url + "/attachments",
            json={"filename": yaml_form, "size_bytes": 1, "storage_ref": sas},
            headers=auth(),
        ),
        await http.post(
            url + "/status",
            json={"status": "in_progress", "actor": yaml_form, "reason": reasons[0]},
            headers=auth(),
        ),
        await http.post(
            url + "/assignment",
            json={"assignee": yaml_form, "escalation_tier": yaml_form, "reason": reasons[1]},
            headers=auth(),
        ),
        await http.post(url + "/request-info", json={"question": every_form}, headers=auth()),
        await http.post(url + "/user-response", json={"body": every_form}, headers=auth()),
        await http.post(
            url + "/access-request",
            json={
                "resource": reasons[2][:2000],
                "permission": yaml_form,
                "account_ref": yaml_form,
                "assignment_group": yaml_form,
                "reason": reasons[0],
            },
            headers=auth(),
        ),
    ]
    change_ids = []
    for _ in range(3):
        change = await http.post(
            "/api/changes/request",
            json={
                "ticket_id": ticket_id,
                "action": "rotate",
                "target": reasons[1],
                "reason": reasons[2],
                "command": every_form,
            },
            headers=auth(),
        )
        writes.append(change)
        change_ids.append(change.json()["change"]["id"])
    approver = auth(subject="bob")
    approved, rejected, _ = (f"/api/changes/{change_id}" for change_id in change_ids)
    writes += [
        await http.post(
            approved + "/approve",
            json={"approved_by": yaml_form, "reason": reasons[0]},
            headers=approver,
        ),
        await http.post(
            approved + "/complete",
            json={"completed_by": yaml_form, "result": every_form[:20_000]},
            headers=approver,
        ),
        await http.post(
            rejected + "/reject",
            json={"rejected_by": yaml_form, "reason": reasons[1]},
            headers=approver,
        ),
    ]
    old_agent = f"/api/agents/{assigned.json()['agent']['id']}"
    restarted = await http.post(old_agent + "/restart", json={"reason": reasons[2]}, headers=auth())
    new_agent = f"/api/agents/{restarted.json()['agent']['id']}"
    writes += [
        restarted,
        await http.post(new_agent + "/stop", json={"reason": reasons[0]}, headers=auth()),
    ]
    assert [response.status_code for response in writes] == [201] * 4 + [200] * 4 + [201] * 4 + [
        200
    ] * 5, [response.text for response in writes]
    texts = {f"ticket write {n}": response.text for n, response in enumerate(writes)}
    reads = [
        url,
        url + "/notes",
        url + "/attachments",
        url + "/context",
        url + "/access-requests",
        "/api/tickets",
        "/api/changes",
        "/api/changes/pending",
        "/api/changes/stats",
        "/api/providers",
        *(f"/api/changes/{change_id}" for change_id in change_ids),
        *(f"/api/changes/{change_id}/status" for change_id in change_ids),
        "/api/agents",
        "/api/agents/active",
        "/api/agents/stats",
        *(agent + read for agent in (old_agent, new_agent) for read in ("", "/logs", "/steering")),
    ]
    for read in reads:
        response = await http.get(read, headers=auth())
        assert response.status_code == 200, (read, response.text)
        texts[read] = response.text
    assert "[redacted]" in texts[url + "/notes"]
    return texts


async def _thread_runs(http, auth, every_form: str, reasons: list[str]) -> dict[str, str]:
    """The thread-run routes' responses, for runs whose messages and tool calls carry
    the forms: one answered, one paused at a tool call, resolved, then cancelled.
    There is no worker here: each run is executed by the in-process `run` route while
    its stream is open, and the stream ends with it."""
    call = json.dumps({"summary": "rotate", "change": forms_text(WRITTEN_FORMS[:-1])})
    messages = {
        "runbook-agent": f"Which runbook?\n{every_form}",
        "change-planner": f"Plan the rotation\n#call propose_change {call}\n{every_form}",
    }
    texts: dict[str, str] = {}
    for agent, message in messages.items():
        created = await http.post("/api/v1/threads", json={"agent_type": agent}, headers=auth())
        thread_url = f"/api/v1/threads/{created.json()['thread']['id']}"
        stream = asyncio.create_task(
            http.post(f"{thread_url}/runs", json={"message": message}, headers=auth())
        )
        while (run_id := await _last_run(http, auth, thread_url)) is None:
            await asyncio.sleep(0.05)
        ran = await http.post(f"{TASKS}/{run_id}/run", headers=auth())
        assert ran.status_code == 200, ran.text
        texts[f"{agent} run stream"] = (await asyncio.wait_for(stream, 20)).text
        texts[f"{agent} run"] = (await http.get(f"/api/v1/runs/{run_id}", headers=auth())).text
        texts[f"{agent} thread"] = (await http.get(thread_url, headers=auth())).text
        if agent == "change-planner":
            [request] = json.loads(texts[f"{agent} run"])["approval_requests"]
            assert "[redacted]" in json.dumps(request["arguments"])
            resolved = await http.post(
                f"/api/v1/approvals/{request['id']}/resolve",
                json={"status": "rejected", "reason": reasons[0]},
                headers=auth(),
            )
            assert resolved.status_code == 200, resolved.text
            texts["resolve"] = resolved.text
            cancelled = await http.post(
                f"/api/v1/runs/{run_id}/cancel", json={"reason": reasons[1]}, headers=auth()
            )
            assert cancelled.status_code == 200, cancelled.text
            texts["cancel"] = cancelled.text
        url = f"/api/v1/runs/{run_id}/stream"
        texts[f"{agent} run stream again"] = (await http.get(url, headers=auth())).text
    return texts


async def _last_run(http, auth, thread_url: str) -> str | None:
    return (await http.get(thread_url, headers=auth())).json()["thread"]["last_run_id"]


async def _session_texts(http: httpx.AsyncClient, auth, tenant: str, every_form: str) -> dict:
    """A session's message carrying every form, answered by a run executed in process
    (the `run` route: no worker runs here), and what the session routes then return."""
    session_id = f"sess-{tenant}"
    body = {
        "session_id": session_id,
        "message": f"Rotate the database password\n{every_form}",
        "tenant_id": tenant,
        "user_id": "alice",
    }
    processing = asyncio.create_task(http.post(f"{AGENTS}/process", json=body, headers=auth()))

    async def started() -> str:
        while True:
            threads = (await http.get("/api/v1/threads", headers=auth())).json()["threads"]
            runs = [t["last_run_id"] for t in threads if t["session_id"] == session_id]
            if runs and runs[0]:
                return runs[0]
            await asyncio.sleep(0.05)

    run_id = await asyncio.wait_for(started(), 10)
    ran = await http.post(f"{TASKS}/{run_id}/run", headers=auth())
    assert ran.json()["status"] == "succeeded", ran.text
    processed = await processing
    assert processed.status_code == 200, processed.text
    approve = {
        "approval_id": run_id,
        "session_id": session_id,
        "decision": "approved",
        "comment": every_form[:2000],
    }
    return {
        "process": processed.text,
        "session status": (await http.get(f"{AGENTS}/status/{session_id}", headers=auth())).text,
        "session stream": (await http.get(f"{AGENTS}/stream/{session_id}", headers=auth())).text,
        "approve": (await http.post(f"{AGENTS}/approve", json=approve, headers=auth())).text,
    }


async def _agent_runtime_texts(http: httpx.AsyncClient, auth, every_form: str) -> dict[str, str]:
    """A message carrying every form (and a claim token and a session credential) sent
    on a workspace channel by one claimed session, what the agent runtime routes then
    return to either, and a soul document carrying the forms, validated."""
    claims = []
    for _ in range(2):
        body = {"lane": "analysis", "title": "Channel talk", "instructions": "Talk."}
        assert (await http.post(TASKS, json=body, headers=auth())).status_code == 201
        claimed = await http.post(
            "/api/agent/tasks/claim-next", json={"lanes": ["analysis"]}, headers=auth("worker")
        )
        claims.append(claimed.json()["claim"])
    sender, receiver = ({"Authorization": f"Bearer {c['session_credential']}"} for c in claims)
    listed = await http.get("/api/agent/channels", headers=sender)
    [room] = [c["id"] for c in listed.json()["channels"] if c["channel"] == "ops-room"]
    message = {
        "body": {
            "notes": every_form,
            "tokens": f"claim {claims[0]['claim_token']} session {claims[1]['session_credential']}",
        },
        "metadata": {
            "message_kind": "status",
            "correlation_id": "password: hunter2-yaml",
            "workflow_id": "export DB_PASSWORD=hunter2-shell",
            "ext": {"forms": every_form, "api_key": "hunter2-metadata"},
        },
    }
    sent = await http.post(f"/api/agent/channels/{room}/send", json=message, headers=sender)
    assert sent.status_code == 200, sent.text
    # Before the receive: the unread message's preview is in the inbox summary.
    context = await http.get("/api/agent/context", headers=receiver)
    assert context.json()["context"]["inbox_summary"]["unread_count"] == 1, context.text
    received = await http.get(f"/api/agent/channels/{room}/recv", headers=receiver)
    assert len(received.json()["messages"]) == 1, received.text
    texts = {
        "channel send": sent.text,
        "channel recv": received.text,
        "channels": (await http.get("/api/agent/channels", headers=receiver)).text,
        "context": context.text,
        "sender context": (await http.get("/api/agent/context", headers=sender)).text,
        "me": (await http.get("/api/agent/me", headers=sender)).text,
        "soul": (await http.get("/api/agent/soul", headers=sender)).text,
        "coordinator": (await http.get("/api/agent/coordinator/config", headers=sender)).text,
    }
    soul = f"---\nrole: Rotator\n---\n{every_form}\n"
    validated = await http.post("/api/agent/soul/validate", json={"content": soul}, headers=sender)
    assert validated.status_code == 200, validated.text
    texts["soul validate"] = validated.text
    spawned = await http.post(
        "/api/agent/spawn",
        json={"instructions": every_form, "title": "password: hunter2-yaml"},
        headers=sender,
    )
    assert spawned.status_code == 200, spawned.text
    texts["spawn"] = spawned.text
    for text in texts.values():
        assert claims[0]["claim_token"] not in text
        assert claims[1]["session_credential"] not in text
    return texts


async def _client_session_texts(http: httpx.AsyncClient, auth, every_form: str) -> dict:
    """A client-side session whose turn, tool call (its arguments as the client sent
    them) and summary carry the forms, each step executed in process (no worker runs
    here), and what the session routes then return."""
    created = await http.post(SESSIONS, json={"agent_type": "incident-analyst"}, headers=auth())
    assert created.status_code == 201, created.text
    url = f"{SESSIONS}/{created.json()['id']}"
    thread_url = f"/api/v1/threads/{created.json()['id']}"
    call = json.dumps({"name": forms_text(WRITTEN_FORMS[:-1])})
    turn = {"model": "offline", "input": f"Rotate it\n#call read_artifact {call}\n{every_form}"}
    inference = await _stepped(http, auth, url, "/inference", turn)
    [asked] = inference.json()["tool_calls"]
    executed = {**asked, "arguments": json.dumps({"name": every_form})}
    tool_call = await _stepped(http, auth, url, "/tool-calls", executed)
    done = await http.post(
        url + "/complete",
        json={"summary": every_form, "confidence": 0.5, "evidence": [every_form[:10_000]]},
        headers=auth(),
    )
    assert done.status_code == 200, done.text
    steps = done.json()["steps"]
    # The arguments the client sent were stored, executed and returned redacted.
    assert "[redacted]" in steps[1]["input"]["arguments"]
    assert "[redacted]" in (done.json()["summary"] or "")
    texts = {
        "client session": created.text,
        "client inference": inference.text,
        "client tool call": tool_call.text,
        "client complete": done.text,
        "client session read": (await http.get(url, headers=auth())).text,
        "client thread": (await http.get(thread_url, headers=auth())).text,
    }
    for step in steps:
        run_url = f"/api/v1/runs/{step['task_id']}"
        texts[f"client step {step['step_index']}"] = (await http.get(run_url, headers=auth())).text
        stream = await http.get(run_url + "/stream", headers=auth())
        texts[f"client step {step['step_index']} stream"] = stream.text
    return texts


async def _stepped(http: httpx.AsyncClient, auth, url: str, path: str, body: dict):
    """A step's request, its step executed by the in-process `run` route meanwhile."""
    before = len((await http.get(url, headers=auth())).json()["steps"])
    request = asyncio.create_task(http.post(url + path, json=body, headers=auth()))

    async def taken() -> str:
        while True:
            steps = (await http.get(url, headers=auth())).json()["steps"]
            if len(steps) > before:
                return steps[-1]["task_id"]
            await asyncio.sleep(0.05)

    task_id = await asyncio.wait_for(taken(), 10)
    ran = await http.post(f"{TASKS}/{task_id}/run", headers=auth())
    assert ran.json()["status"] == "succeeded", ran.text
    response = await asyncio.wait_for(request, 20)
    assert response.status_code == 200, response.text
    return response


def test_log_lines_are_redacted(capsys) -> None:
    configure_logging(Redactor(load_policy().secret_keys))
    try:
        log = structlog.get_logger("t")
        log.info(
            "connecting",
            connection_string="Endpoint=sb://x;SharedAccessKey=abc123",
            tokens_used=3,
        )
        for name, text, _ in WRITTEN_FORMS:
            log.info("request_failed", form=name, detail=text, body={"text": text})
        lines = capsys.readouterr().err.splitlines()
        assert len(lines) == 1 + len(WRITTEN_FORMS)
        assert "abc123" not in lines[0]
        assert json.loads(lines[0])["tokens_used"] == 3
        for line in lines:
            assert leaked(line) == [], line
        assert [secret for secret in SECRETS if secret in "\n".join(lines)] == []
    finally:
        structlog.reset_defaults()
