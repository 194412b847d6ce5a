"""The Responses API's server-sent events for one finished response, as
`openai_compatible_server` streams them (not a test module): the event sequence a hosted
model sends, text one word per delta, a function call's arguments in two pieces."""

import json
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any


def response_events(response: dict[str, Any]) -> list[dict[str, Any]]:
    """`response` (one output item, status completed) as its stream of events."""
    numbers = iter(range(1_000_000))
    started = {**response, "status": "in_progress", "output": [], "usage": None}
    events = [
        {"type": "response.created", "response": started},
        {"type": "response.in_progress", "response": started},
    ]
    [item] = response["output"]
    events += _item_events(item)
    events.append({"type": "response.completed", "response": response})
    return [{**event, "sequence_number": next(numbers)} for event in events]


def _item_events(item: dict[str, Any]) -> Iterator[dict[str, Any]]:
    where = {"item_id": item["id"], "output_index": 0}
    if item["type"] == "function_call":
        yield {
            "type": "response.output_item.added",
            "output_index": 0,
            "item": {**item, "arguments": "", "status": "in_progress"},
        }
        middle = len(item["arguments"]) // 2
        for piece in (item["arguments"][:middle], item["arguments"][middle:]):
            yield {"type": "response.function_call_arguments.delta", **where, "delta": piece}
        yield {
            "type": "response.function_call_arguments.done",
            **where,
            "name": item["name"],
            "arguments": item["arguments"],
        }
    else:
        text = item["content"][0]["text"]
        part = {"type": "output_text", "text": "", "annotations": []}
        yield {
            "type": "response.output_item.added",
            "output_index": 0,
            "item": {**item, "content": [], "status": "in_progress"},
        }
        yield {"type": "response.content_part.added", **where, "content_index": 0, "part": part}
        for piece in re.findall(r"\S+\s*|\s+", text):
            yield {
                "type": "response.output_text.delta",
                **where,
                "content_index": 0,
                "delta": piece,
                "logprobs": [],
            }
        yield {
            "type": "response.output_text.done",
            **where,
            "content_index": 0,
            "text": text,
            "logprobs": [],
        }
        yield {
            "type": "response.content_part.done",
            **where,
            "content_index": 0,
            "part": {**part, "text": text},
        }
    yield {"type": "response.output_item.done", "output_index": 0, "item": item}


async def sse(events: list[dict[str, Any]]) -> AsyncIterator[bytes]:
    for event in events:
        data = json.dumps(event, separators=(",", ":"))
        yield f"event: {event['type']}\ndata: {data}\n\n".encode()
