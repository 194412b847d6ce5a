"""The offline model's answer as the Responses API stream a hosted model would send.

Text comes in one delta per word (with the whitespace after it), so a consumer sees real
incremental text, many deltas per answer; a function call comes as one arguments delta.
Kept apart from `offline_model.py`, which decides what the answer is.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from agents.items import TResponseStreamEvent
from agents.usage import Usage
from openai.types.responses import (
    Response,
    ResponseCompletedEvent,
    ResponseContentPartAddedEvent,
    ResponseContentPartDoneEvent,
    ResponseCreatedEvent,
    ResponseFunctionCallArgumentsDeltaEvent,
    ResponseFunctionCallArgumentsDoneEvent,
    ResponseFunctionToolCall,
    ResponseInProgressEvent,
    ResponseOutputItemAddedEvent,
    ResponseOutputItemDoneEvent,
    ResponseOutputMessage,
    ResponseOutputText,
    ResponseTextDeltaEvent,
    ResponseTextDoneEvent,
    ResponseUsage,
)

MODEL_NAME = "offline"
# A word and the whitespace after it (or leading whitespace on its own).
_WORD = re.compile(r"\s+|\S+\s*")


@dataclass(frozen=True)
class Turn:
    """One answer of the offline model, streamed or not."""

    item: ResponseOutputMessage | ResponseFunctionToolCall
    item_id: str
    text: str
    """The message text, or the tool name plus arguments; what output usage is counted on."""
    usage: Usage
    response_id: str


def _response(
    turn: Turn,
    status: Literal["in_progress", "completed"],
) -> Response:
    completed = status == "completed"
    usage = turn.usage
    return Response(
        id=turn.response_id,
        # A fixed timestamp keeps replayed streams byte-identical.
        created_at=0,
        model=MODEL_NAME,
        object="response",
        output=[turn.item] if completed else [],
        parallel_tool_calls=False,
        tool_choice="auto",
        tools=[],
        status=status,
        usage=ResponseUsage(
            input_tokens=usage.input_tokens,
            input_tokens_details=usage.input_tokens_details,
            output_tokens=usage.output_tokens,
            output_tokens_details=usage.output_tokens_details,
            total_tokens=usage.total_tokens,
        )
        if completed
        else None,
    )


def stream_events(turn: Turn) -> Iterator[TResponseStreamEvent]:
    """The Responses API event sequence that a hosted model would emit for ``turn``."""
    sequence = itertools.count()
    started = _response(turn, "in_progress")
    yield ResponseCreatedEvent(
        type="response.created", response=started, sequence_number=next(sequence)
    )
    yield ResponseInProgressEvent(
        type="response.in_progress", response=started, sequence_number=next(sequence)
    )

    item = turn.item
    if isinstance(item, ResponseFunctionToolCall):
        yield ResponseOutputItemAddedEvent(
            type="response.output_item.added",
            item=item.model_copy(update={"arguments": "", "status": "in_progress"}),
            output_index=0,
            sequence_number=next(sequence),
        )
        yield ResponseFunctionCallArgumentsDeltaEvent(
            type="response.function_call_arguments.delta",
            item_id=turn.item_id,
            output_index=0,
            delta=item.arguments,
            sequence_number=next(sequence),
        )
        yield ResponseFunctionCallArgumentsDoneEvent(
            type="response.function_call_arguments.done",
            item_id=turn.item_id,
            output_index=0,
            name=item.name,
            arguments=item.arguments,
            sequence_number=next(sequence),
        )
    else:
        yield ResponseOutputItemAddedEvent(
            type="response.output_item.added",
            item=item.model_copy(update={"content": [], "status": "in_progress"}),
            output_index=0,
            sequence_number=next(sequence),
        )
        yield ResponseContentPartAddedEvent(
            type="response.content_part.added",
            item_id=turn.item_id,
            output_index=0,
            content_index=0,
            part=ResponseOutputText(type="output_text", text="", annotations=[]),
            sequence_number=next(sequence),
        )
        for chunk in _WORD.findall(turn.text):
            yield ResponseTextDeltaEvent(
                type="response.output_text.delta",
                item_id=turn.item_id,
                output_index=0,
                content_index=0,
                delta=chunk,
                logprobs=[],
                sequence_number=next(sequence),
            )
        yield ResponseTextDoneEvent(
            type="response.output_text.done",
            item_id=turn.item_id,
            output_index=0,
            content_index=0,
            text=turn.text,
            logprobs=[],
            sequence_number=next(sequence),
        )
        yield ResponseContentPartDoneEvent(
            type="response.content_part.done",
            item_id=turn.item_id,
            output_index=0,
            content_index=0,
            part=ResponseOutputText(type="output_text", text=turn.text, annotations=[]),
            sequence_number=next(sequence),
        )

    yield ResponseOutputItemDoneEvent(
        type="response.output_item.done",
        item=item,
        output_index=0,
        sequence_number=next(sequence),
    )
    yield ResponseCompletedEvent(
        type="response.completed",
        response=_response(turn, "completed"),
        sequence_number=next(sequence),
    )
