"""A deterministic, fully offline model for the OpenAI Agents SDK.

``OfflineModel`` lets the worker drive real agents (the real ``Runner``, real tools, real
tracing) with no network access and no API key: in tests, demos and air-gapped lanes. Instead of
sampling it answers by the fixed rules below, so the same conversation always gets the same
answer. Use it with ``RunConfig(model_provider=OfflineModelProvider())``.

Directives
    The instruction text is the agent's system instructions followed by the latest user message.
    Every line of it that reads::

        #call <tool_name> {json arguments}

    is a directive (leading whitespace is allowed; without arguments it means ``{}``).
    Directives are numbered 0, 1, 2, ... in order of appearance, instructions first.

Call ids
    Directive ``n`` gets the call id ``"call_" + sha256(f"{n}:{tool_name}:{arguments}")[:24]``
    (hex digest), where ``arguments`` is the canonical JSON of the object (sorted keys, compact
    separators). Replaying a conversation, e.g. resuming a saved ``RunState`` in another process,
    therefore reproduces the same ids.

Handoffs
    An agent that offers handoffs (a router) always hands over: its answer is one call of a
    handoff tool with arguments ``{"reason": "..."}``, to the handoff whose description lists
    (as ``Keywords: a, b.``) the most words of the latest user message, the first on a tie,
    the last offered when none is named. Directives are left for the agent it hands to.

One turn
    A directive is done once the input holds a ``function_call_output`` with its call id. The
    model looks at the first directive that is not done:

    * its arguments are not a JSON object: final message
      ``offline model: invalid JSON arguments for tool '<name>': <reason>``;
    * its tool is not one of the function tools offered to the model: final message
      ``offline model: tool '<name>' is not available (offered: <names or none>)``;
    * otherwise: one ``function_call`` item for it, and nothing else.

    When every directive is done the answer is the final message::

        offline model: completed <N> tool call(s)
        - <tool name>: <output>    (one entry per tool result in the input, in input order;
                                    a handoff's ``transfer_to_*`` call is not one)
        task: <first non-blank line of the latest user message that is not a directive>

Steering notes
    A user message that begins ``Steering note <event id> from`` is a note someone sent the
    agent mid-run (``worker/steering.py``), not its task: the latest user message above is
    the latest other one. While the ``ack_steering`` tool is offered, each note in the input
    is answered first, before the next directive, by one call ``ack_steering {"event_id":
    "<event id>"}`` with the call id ``"call_" + sha256(f"steer:{event id}")[:24]``.

Usage is counted in whitespace-separated words: input is the system instructions plus the text of
every input item, output is the message text or the tool name plus its arguments; every response
is one request. Each response is traced in its own ``generation_span`` with model ``"offline"``.
Streamed, a message comes one word per delta (see ``worker/offline_stream.py``).

Final messages are plain text, so agents with a structured ``output_type`` are not supported.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from agents.agent_output import AgentOutputSchemaBase
from agents.handoffs import Handoff
from agents.items import ModelResponse, TResponseInputItem, TResponseStreamEvent
from agents.model_settings import ModelSettings
from agents.models.interface import Model, ModelProvider, ModelTracing
from agents.tool import FunctionTool, Tool
from agents.tracing import GenerationSpanData, Span, generation_span
from agents.usage import Usage, model_usage_to_span_usage
from openai.types.responses import (
    ResponseFunctionToolCall,
    ResponseOutputMessage,
    ResponseOutputText,
)
from openai.types.responses.response_prompt_param import ResponsePromptParam

from worker.offline_stream import MODEL_NAME, Turn, stream_events

_DIRECTIVE = re.compile(r"^\s*#call\s+(?P<name>\S+)(?:\s+(?P<arguments>.*?))?\s*$")
_STEERING_NOTE = re.compile(r"^Steering note (?P<event_id>[0-9a-f-]{36}) from ")
_ACK_TOOL = "ack_steering"

_Item = Mapping[str, Any]


@dataclass(frozen=True)
class _Directive:
    name: str
    arguments: str
    """Canonical JSON of the arguments, or the raw text when ``error`` is set."""
    error: str | None
    call_id: str


class OfflineModel(Model):
    """Answers by the module's directive rules without leaving the process."""

    async def get_response(
        self,
        system_instructions: str | None,
        input: str | list[TResponseInputItem],
        model_settings: ModelSettings,
        tools: list[Tool],
        output_schema: AgentOutputSchemaBase | None,
        handoffs: list[Handoff],
        tracing: ModelTracing,
        *,
        previous_response_id: str | None,
        conversation_id: str | None,
        prompt: ResponsePromptParam | None,
    ) -> ModelResponse:
        items = _as_items(input)
        with _open_span(system_instructions, items, model_settings, tracing) as span:
            turn = _respond(system_instructions, items, tools, handoffs)
            _record(span, turn, tracing)
        return ModelResponse(output=[turn.item], usage=turn.usage, response_id=turn.response_id)

    async def stream_response(
        self,
        system_instructions: str | None,
        input: str | list[TResponseInputItem],
        model_settings: ModelSettings,
        tools: list[Tool],
        output_schema: AgentOutputSchemaBase | None,
        handoffs: list[Handoff],
        tracing: ModelTracing,
        *,
        previous_response_id: str | None,
        conversation_id: str | None,
        prompt: ResponsePromptParam | None,
    ) -> AsyncIterator[TResponseStreamEvent]:
        items = _as_items(input)
        with _open_span(system_instructions, items, model_settings, tracing) as span:
            turn = _respond(system_instructions, items, tools, handoffs)
            # Recorded before streaming so the span is complete even if the consumer stops early.
            _record(span, turn, tracing)
            for event in stream_events(turn):
                yield event


class OfflineModelProvider(ModelProvider):
    """Serves ``OfflineModel`` for every model name."""

    def get_model(self, model_name: str | None) -> OfflineModel:
        # Any name, so agents configured for hosted models run offline unchanged.
        return OfflineModel()


def _as_items(input: str | list[TResponseInputItem]) -> list[_Item]:
    # A bare string is the SDK's shorthand for one user message; normalising it lets every rule
    # work on a single shape.
    if isinstance(input, str):
        return [{"role": "user", "content": input}]
    return [cast(_Item, item) for item in input]


def _content_text(content: object) -> str:
    """Text of a message content or a tool output: a string, or a list of parts with text."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            part["text"]
            for part in content
            if isinstance(part, Mapping) and isinstance(part.get("text"), str)
        )
    return ""


def _item_text(item: _Item) -> str:
    kind = item.get("type", "message")
    if kind == "message":
        return _content_text(item.get("content"))
    if kind == "function_call":
        return f"{item.get('name', '')} {item.get('arguments', '')}"
    if kind == "function_call_output":
        return _content_text(item.get("output"))
    return ""


def _user_texts(items: Sequence[_Item]) -> list[str]:
    return [
        _content_text(item.get("content"))
        for item in items
        if item.get("role") == "user" and item.get("type", "message") == "message"
    ]


def _latest_user_text(items: Sequence[_Item]) -> str:
    tasks = [text for text in _user_texts(items) if _STEERING_NOTE.match(text) is None]
    return tasks[-1] if tasks else ""


def _steering_acks(items: Sequence[_Item]) -> list[_Directive]:
    """One ``ack_steering`` call per steering note in the input, in input order."""
    acks = []
    for text in _user_texts(items):
        note = _STEERING_NOTE.match(text)
        if note is not None:
            arguments = json.dumps({"event_id": note["event_id"]}, separators=(",", ":"))
            seed = f"steer:{note['event_id']}"
            call_id = f"call_{hashlib.sha256(seed.encode()).hexdigest()[:24]}"
            acks.append(_Directive(_ACK_TOOL, arguments, None, call_id))
    return acks


def _canonical_arguments(raw: str) -> tuple[str, str | None]:
    """Return (canonical JSON, None), or (raw text, reason) when it is not a JSON object."""
    try:
        parsed = json.loads(raw)
    except json.JSONDecodeError as exc:
        return raw, str(exc)
    if not isinstance(parsed, dict):
        return raw, "arguments must be a JSON object"
    # Canonical form so that spacing or key order in the directive cannot change the call id.
    return json.dumps(parsed, sort_keys=True, separators=(",", ":"), ensure_ascii=False), None


def _parse_directives(text: str) -> list[_Directive]:
    directives: list[_Directive] = []
    for line in text.splitlines():
        match = _DIRECTIVE.match(line)
        if match is None:
            continue
        name = match["name"]
        arguments, error = _canonical_arguments(match["arguments"] or "{}")
        seed = f"{len(directives)}:{name}:{arguments}"
        call_id = f"call_{hashlib.sha256(seed.encode()).hexdigest()[:24]}"
        directives.append(_Directive(name, arguments, error, call_id))
    return directives


def _summary(items: Sequence[_Item], task_text: str) -> str:
    names = {
        item.get("call_id"): item.get("name")
        for item in items
        if item.get("type") == "function_call"
    }
    # A handoff's call (the SDK names it `transfer_to_<agent>`) is how the conversation
    # reached this agent, not a tool it used.
    results = [
        item
        for item in items
        if item.get("type") == "function_call_output"
        and not str(names.get(item.get("call_id")) or "").startswith("transfer_to_")
    ]
    task_line = next(
        (
            line.strip()
            for line in task_text.splitlines()
            if line.strip() and _DIRECTIVE.match(line) is None
        ),
        "(none)",
    )
    lines = [f"offline model: completed {len(results)} tool call(s)"]
    lines += [
        f"- {names.get(item.get('call_id'), item.get('call_id'))}: "
        f"{_content_text(item.get('output'))}"
        for item in results
    ]
    lines.append(f"task: {task_line}")
    return "\n".join(lines)


def _words(text: str) -> int:
    return len(text.split())


def _digest(value: object) -> str:
    encoded = json.dumps(value, sort_keys=True, default=str).encode()
    return hashlib.sha256(encoded).hexdigest()[:24]


_KEYWORDS = re.compile(r"Keywords: (?P<words>[^.]*)\.")


def _route(task_text: str, handoffs: list[Handoff]) -> tuple[Handoff, str]:
    """The handoff whose keywords (``Keywords: a, b.`` in its description) the message
    names most often, first in order on a tie; the last handoff when none is named."""
    words = re.findall(r"[\w-]+", task_text.lower())
    best: tuple[int, Handoff, list[str]] | None = None
    for candidate in handoffs:
        found = _KEYWORDS.search(candidate.tool_description or "")
        keywords = [word.strip().lower() for word in found["words"].split(",")] if found else []
        hits = [word for word in keywords if word in words]
        if hits and (best is None or len(hits) > best[0]):
            best = (len(hits), candidate, hits)
    if best is None:
        return handoffs[-1], "no routing keyword in the message; the default specialist"
    return best[1], f"the message mentions {', '.join(best[2])}"


def _respond(
    system_instructions: str | None,
    items: Sequence[_Item],
    tools: list[Tool],
    handoffs: Sequence[Handoff] = (),
) -> Turn:
    task_text = _latest_user_text(items)
    directives = _parse_directives(f"{system_instructions or ''}\n{task_text}")
    offered = sorted(tool.name for tool in tools if isinstance(tool, FunctionTool))
    if _ACK_TOOL in offered:
        directives = _steering_acks(items) + directives
    done = {item.get("call_id") for item in items if item.get("type") == "function_call_output"}
    pending = next((d for d in directives if d.call_id not in done), None)
    # Ids hash the whole request so that replaying a conversation reproduces them exactly.
    digest = _digest([system_instructions, list(items)])

    item: ResponseOutputMessage | ResponseFunctionToolCall
    if handoffs:  # a router: it hands over, it does not answer
        target, reason = _route(task_text, list(handoffs))
        arguments = json.dumps({"reason": reason}, separators=(",", ":"))
        item_id = f"fc_{digest}"
        text = f"{target.tool_name} {arguments}"
        item = ResponseFunctionToolCall(
            type="function_call",
            id=item_id,
            call_id=f"call_{digest}",
            name=target.tool_name,
            arguments=arguments,
            status="completed",
        )
    elif pending is not None and pending.error is None and pending.name in offered:
        item_id = f"fc_{pending.call_id.removeprefix('call_')}"
        text = f"{pending.name} {pending.arguments}"
        item = ResponseFunctionToolCall(
            type="function_call",
            id=item_id,
            call_id=pending.call_id,
            name=pending.name,
            arguments=pending.arguments,
            status="completed",
        )
    else:
        if pending is None:
            text = _summary(items, task_text)
        elif pending.error is not None:
            reason = pending.error
            text = f"offline model: invalid JSON arguments for tool {pending.name!r}: {reason}"
        else:
            available = ", ".join(offered) or "none"
            text = f"offline model: tool {pending.name!r} is not available (offered: {available})"
        item_id = f"msg_{digest}"
        item = ResponseOutputMessage(
            type="message",
            id=item_id,
            role="assistant",
            status="completed",
            content=[ResponseOutputText(type="output_text", text=text, annotations=[])],
        )

    input_tokens = _words(system_instructions or "") + sum(_words(_item_text(i)) for i in items)
    output_tokens = _words(text)
    usage = Usage(
        requests=1,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        total_tokens=input_tokens + output_tokens,
    )
    return Turn(item=item, item_id=item_id, text=text, usage=usage, response_id=f"resp_{digest}")


def _open_span(
    system_instructions: str | None,
    items: Sequence[_Item],
    model_settings: ModelSettings,
    tracing: ModelTracing,
) -> Span[GenerationSpanData]:
    span_input = list(items)
    if system_instructions:
        span_input.insert(0, {"role": "system", "content": system_instructions})
    return generation_span(
        input=span_input if tracing.include_data() else None,
        model=MODEL_NAME,
        model_config=model_settings.to_traceable_dict(),
        disabled=tracing.is_disabled(),
    )


def _record(span: Span[GenerationSpanData], turn: Turn, tracing: ModelTracing) -> None:
    if tracing.include_data():
        span.span_data.output = [turn.item.model_dump()]
    span.span_data.usage = model_usage_to_span_usage(turn.usage)
