"""Reading a task's Server-Sent Events stream in tests."""

import json


def parse_events(text: str) -> list[dict]:
    """SSE frames as `{"event", "id"?, "data"}` with `data` decoded: the shape the
    stream's schema (`api.routes.events.EVENT_SCHEMA`) describes."""
    events = []
    for block in text.strip().split("\n\n"):
        fields = dict(
            line.split(": ", 1)
            for line in block.splitlines()
            if ": " in line and not line.startswith(":")
        )
        if "event" in fields:
            event = {"event": fields["event"], "data": json.loads(fields["data"])}
            if "id" in fields:
                event["id"] = fields["id"]
            events.append(event)
    return events


def assert_tool_calls_pair_with_results(events: list[dict]) -> None:
    """Every verdict and result answers a call the stream showed before it, by the SDK's
    call id, and every call got a result."""
    calls: dict[str, str] = {}
    results: set[str] = set()
    for event in events:
        data = event["data"]
        if event["event"] == "tool_call":
            calls[data["call_id"]] = data["tool"]
        elif event["event"] in ("tool_verdict", "tool_result"):
            assert calls.get(data["call_id"]) == data["tool"], (event, calls)
            if event["event"] == "tool_result":
                results.add(data["call_id"])
    assert calls and results == set(calls), (calls, results)
