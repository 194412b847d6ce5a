"""The live event stream: a run shows up as SSE events while it happens, the stream
ends with `done`, and Last-Event-ID resumes without repeats."""

import asyncio
import json

TASKS = "/api/agents/tasks"


def _parse(text: str) -> list[dict]:
    events = []
    for block in text.strip().split("\n\n"):
        fields = dict(
            line.split(": ", 1)
            for line in block.splitlines()
            if ": " in line and not line.startswith(":")
        )
        if "event" in fields:
            events.append(
                {
                    "id": fields.get("id"),
                    "event": fields["event"],
                    "data": json.loads(fields["data"]),
                }
            )
    return events


async def test_stream_follows_a_run_live_and_ends_with_done(http, auth, new_task) -> None:
    instructions = 'Note it\n#call write_artifact {"name": "n.txt", "content": "x"}'
    task = (await new_task(instructions=instructions))["task"]
    url = f"{TASKS}/{task['id']}/events"

    async def read_stream() -> list[dict]:
        async with http.stream("GET", url, headers=auth("viewer")) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            return _parse("".join([chunk async for chunk in response.aiter_text()]))

    reader = asyncio.create_task(read_stream())
    await asyncio.sleep(0.2)  # the stream is open and waiting before the run starts
    run = await http.post(f"{TASKS}/{task['id']}/run", headers=auth())
    assert run.json()["status"] == "succeeded"
    events = await asyncio.wait_for(reader, 10)

    kinds = [e["event"] for e in events]
    assert kinds[0] == "status" and kinds[-1] == "done"
    assert events[-1]["data"]["content"] == "succeeded"
    assert {"text", "tool_call", "tool_result"} <= set(kinds)
    [call] = [e for e in events if e["event"] == "tool_call"]
    assert call["data"]["data"]["tool"] == "write_artifact"
    ids = [int(e["id"]) for e in events if e["id"]]
    assert ids == list(range(1, len(ids) + 1))

    # Reconnecting after the 3rd event replays from the 4th, once each.
    async with http.stream("GET", url, headers={**auth("viewer"), "Last-Event-ID": "3"}) as again:
        resumed = _parse("".join([chunk async for chunk in again.aiter_text()]))
    assert [int(e["id"]) for e in resumed if e["id"]] == ids[3:]


async def test_stream_of_waiting_task_ends_at_once_and_errors_are_json(http, auth, new_task):
    task = (
        await new_task(
            lane="change-prod", mutation_level="write_prod", scope={"rollback": "revert"}
        )
    )["task"]
    response = await http.get(f"{TASKS}/{task['id']}/events", headers=auth())
    events = _parse(response.text)
    assert events[-1] == {
        "id": None,
        "event": "done",
        "data": {"type": "done", "content": "awaiting_approval", "seq": 2},
    }
    bad = await http.get(f"{TASKS}/{task['id']}/events", headers={**auth(), "Last-Event-ID": "x"})
    assert bad.status_code == 400
    other = await http.get(f"{TASKS}/{task['id']}/events", headers=auth(tenant_id="else"))
    assert other.status_code == 404
