"""The live event stream: a run shows up as SSE events while it happens, in a vocabulary
a frontend can show (plain text, tool calls paired with their results by call id), the
stream ends with `done`, and Last-Event-ID resumes without repeats."""

import asyncio
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from uuid import uuid4

import httpx
import jsonschema
import pytest
import uvicorn
from event_stream import assert_tool_calls_pair_with_results, decoded_schema, parse_events
from starlette.applications import Starlette

from api.routes.events import EVENT_SCHEMA, sse_event
from ledger.models import TraceEvent

TASKS = "/api/agents/tasks"
SECRET = "hunter2-in-the-arguments"
CALL = f'#call write_artifact {{"name": "n.txt", "content": "x", "password": "{SECRET}"}}'


@pytest.fixture(scope="module")
async def served(app: Starlette) -> AsyncIterator[str]:
    """The app over real HTTP on 127.0.0.1: the in-process transport hands a response
    over only once it is complete, which would hide whether events arrive live."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, lifespan="off", log_level="warning"))
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.01)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    await serving
    sock.close()


async def test_events_written_after_the_stream_opened_arrive_on_it(
    served, http, auth, new_task
) -> None:
    task = (await new_task(instructions=f"Note it\n{CALL}"))["task"]
    url = f"{TASKS}/{task['id']}/events"
    traces = await http.get(f"{TASKS}/{task['id']}/traces", headers=auth())
    existing = len(traces.json()["traces"])
    assert existing > 0

    events: list[dict] = []
    run: asyncio.Task[httpx.Response] | None = None
    async with (
        httpx.AsyncClient(base_url=served) as client,
        client.stream("GET", url, headers=auth("viewer")) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        frame = ""
        async for line in response.aiter_lines():
            frame += line + "\n"
            if line:
                continue
            events += parse_events(frame)
            frame = ""
            if run is None and events and int(events[-1]["id"]) == existing:
                # Everything written before the stream opened is read: the run starts now.
                run = asyncio.create_task(http.post(f"{TASKS}/{task['id']}/run", headers=auth()))
    assert run is not None
    assert (await run).json()["status"] == "succeeded"

    live = [event for event in events if int(event["data"]["seq"]) > existing]
    kinds = [event["event"] for event in live]
    assert {"text", "tool_call", "tool_verdict", "tool_result"} <= set(kinds)
    assert kinds[-1] == "done" and live[-1]["data"]["content"] == "succeeded"
    ids = [int(event["id"]) for event in events if "id" in event]
    assert ids == sorted(set(ids))


async def test_stream_speaks_text_and_pairs_tool_calls(http, auth, new_task) -> None:
    task = (await new_task(instructions=f"Note it\n{CALL}"))["task"]
    run = await http.post(f"{TASKS}/{task['id']}/run", headers=auth())
    assert run.json()["status"] == "succeeded"
    stream = await http.get(f"{TASKS}/{task['id']}/events", headers=auth("viewer"))
    events = parse_events(stream.text)

    # Each event is what the API's own document says one is.
    document = (await http.get("/openapi.json")).json()
    operation = document["paths"][f"{TASKS}/{{task_id}}/events"]["get"]
    schema = operation["responses"]["200"]["content"]["text/event-stream"]["schema"]
    assert schema == EVENT_SCHEMA
    for event in events:
        jsonschema.validate(event, decoded_schema(schema))
    kinds = [event["event"] for event in events]
    assert kinds[0] == "status" and kinds[-1] == "done"
    # The assistant's words, as it said them: not the repr of the SDK's output list. They
    # are streamed (a run this short sends them in one chunk, the turn's last), and the
    # turn that wrote them does not repeat them.
    texts = [event["data"] for event in events if event["event"] == "text"]
    assert [(t["is_final"], t["data"]) for t in texts] == [(True, {"agent": "workbench-analysis"})]
    text = texts[0]["content"]
    assert text.startswith("offline model: completed 1 tool call(s)\n- write_artifact: stored")
    statuses = [event["data"]["content"] for event in events if event["event"] == "status"]
    assert [s for s in statuses if s in ("thinking", "executing", "complete")] == [
        "thinking",
        "executing",
        "thinking",
        "complete",
    ]
    assert_tool_calls_pair_with_results(events)
    [call] = [event["data"] for event in events if event["event"] == "tool_call"]
    assert call["tool"] == "write_artifact"
    assert call["data"]["arguments"] == {
        "name": "n.txt",
        "content": "x",
        "password": "[redacted]",
    }
    [verdict] = [event["data"] for event in events if event["event"] == "tool_verdict"]
    assert (verdict["content"], verdict["data"]["mutation_level"]) == ("allow", "propose")
    [result] = [event["data"] for event in events if event["event"] == "tool_result"]
    assert result["content"].startswith("stored n.txt (")
    assert SECRET not in stream.text

    # The trace keeps the span data as JSON: the model's input is a list of items.
    traces = (await http.get(f"{TASKS}/{task['id']}/traces", headers=auth())).json()["traces"]
    generations = [t["data"] for t in traces if t["kind"] == "span.generation"]
    assert [item["role"] for item in generations[0]["input"]] == ["system", "user"]
    assert generations[0]["tool_calls"][0]["call_id"] == call["call_id"]
    assert generations[-1]["text"] == text and generations[-1]["streamed"] is True

    # Reconnecting after the 3rd event replays from the 4th, once each.
    ids = [int(event["id"]) for event in events if "id" in event]
    resumed = await http.get(
        f"{TASKS}/{task['id']}/events", headers={**auth("viewer"), "Last-Event-ID": str(ids[2])}
    )
    assert [int(event["id"]) for event in parse_events(resumed.text) if "id" in event] == ids[3:]


async def test_stream_of_waiting_task_ends_at_once_and_errors_are_json(http, auth, new_task):
    task = (
        await new_task(
            lane="change-prod", mutation_level="write_prod", scope={"rollback": "revert"}
        )
    )["task"]
    response = await http.get(f"{TASKS}/{task['id']}/events", headers=auth())
    events = parse_events(response.text)
    assert events[-1] == {
        "event": "done",
        "data": {"type": "done", "content": "awaiting_approval", "seq": 2},
    }
    for event in events:
        jsonschema.validate(event, decoded_schema(EVENT_SCHEMA))
    bad = await http.get(f"{TASKS}/{task['id']}/events", headers={**auth(), "Last-Event-ID": "x"})
    assert bad.status_code == 400
    # A malformed after_seq is refused even when Last-Event-ID would take precedence.
    both = await http.get(
        f"{TASKS}/{task['id']}/events",
        params={"after_seq": "Z"},
        headers={**auth(), "Last-Event-ID": "1"},
    )
    assert both.status_code == 400
    assert "after_seq" in both.json()["error"]["message"]
    other = await http.get(f"{TASKS}/{task['id']}/events", headers=auth(tenant_id="else"))
    assert other.status_code == 404


def test_streamed_text_and_status_events_are_what_the_schema_says() -> None:
    def traced(seq: int, kind: str, message: str, data: dict) -> TraceEvent:
        return TraceEvent(
            seq=seq,
            task_id=uuid4(),
            run_id=uuid4(),
            kind=kind,
            from_status=None,
            to_status=None,
            actor="w1",
            message=message,
            data=data,
            created_at=datetime.now(UTC),
        )

    written = [
        traced(1, "agent.status", "a thinking", {"state": "thinking", "agent": "a"}),
        traced(2, "text.delta", "a text", {"text": "Hello ", "is_final": False, "agent": "a"}),
        traced(3, "text.delta", "a text", {"text": "there", "is_final": True, "agent": "a"}),
        # The turn whose text was streamed repeats none of it (it made no call either).
        traced(
            4, "span.generation", "generation offline", {"text": "Hello there", "streamed": True}
        ),
    ]
    events = parse_events("".join(sse_event(event) for event in written))
    schema = decoded_schema(EVENT_SCHEMA)
    for event in events:
        jsonschema.validate(event, schema)
    assert [(e["event"], e["data"]["content"]) for e in events] == [
        ("status", "thinking"),
        ("text", "Hello "),
        ("text", "there"),
        ("status", "span.generation"),
    ]
    assert [e["data"]["is_final"] for e in events if e["event"] == "text"] == [False, True]
