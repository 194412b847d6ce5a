"""Reading a task's Server-Sent Events stream in tests."""

import json
from typing import Any


def parse_events(text: str) -> list[dict[str, Any]]:
    """SSE frames as `{"event", "id"?, "data"}` with `data` decoded: the shape
    `decoded_schema` of the stream's schema describes. Comments (keep-alives) are
    skipped, and a frame's `data:` lines are joined, as a browser's EventSource does."""
    events = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        fields: dict[str, str] = {}
        data_lines = []
        for line in block.split("\n"):
            if not line or line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "data":
                data_lines.append(value)
            else:
                fields[name] = value
        if not data_lines and not fields:
            continue
        event: dict[str, Any] = {"event": fields.get("event", "message")}
        if "id" in fields:
            event["id"] = fields["id"]
        event["data"] = json.loads("\n".join(data_lines))
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


def decoded_schema(schema: Any) -> Any:
    """The schema of an event as `parse_events` returns it: each JSON-text field's
    `contentSchema` in place of the string."""
    if isinstance(schema, list):
        return [decoded_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    if schema.get("contentMediaType") == "application/json" and "contentSchema" in schema:
        return decoded_schema(schema["contentSchema"])
    return {key: decoded_schema(item) for key, item in schema.items()}
