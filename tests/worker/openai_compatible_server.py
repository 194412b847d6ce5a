"""A small, deterministic OpenAI-compatible HTTP server for tests (not a test module).

It stands in for vLLM, Ollama or LiteLLM (and, on its Azure route, for an Azure OpenAI
deployment) so that the real OpenAI client and the real Agents SDK talk real HTTP to it:
Starlette served by uvicorn in a background thread on 127.0.0.1 and a free port.

Routes
    ``POST /v1/chat/completions`` and ``POST /openai/deployments/{deployment}/chat/completions``
    (the Azure shape; ``api-version`` is recorded, not checked): a JSON ``chat.completion``, or
    with ``"stream": true`` server-sent events, one ``chat.completion.chunk`` per ``data:`` line
    with ``choices[0].delta``, a usage chunk when ``stream_options.include_usage`` is set, then
    ``data: [DONE]``.
    ``POST /v1/responses`` (the Responses API, as the ``openai`` provider speaks it): a
    ``response`` whose output is one ``message`` or one ``function_call`` item, answered by
    the same rules, its input items read as the equivalent chat messages; with ``"stream":
    true`` the events a hosted model sends (``responses_stream.py``).
    ``GET /v1/models``: the configured model ids.

Answers
    Every line of the last user message reading ``#call <tool> {json arguments}`` is a directive
    (no arguments means ``{}``). Directive ``n`` gets the stable call id
    ``"call_" + sha256(f"{n}:{tool}:{canonical arguments}")[:24]``; it is done once a ``tool``
    message with that ``tool_call_id`` is in the request. For the first directive not done:

    * arguments that are not a JSON object: text ``compatible: invalid JSON arguments for tool
      '<tool>'``;
    * a tool the request does not offer: text ``compatible: tool '<tool>' is not offered
      (offered: <names or none>)``;
    * otherwise an assistant message with that one ``tool_calls`` entry.

    When every directive is done the answer is the text ``compatible: `` followed by the tool
    results seen, ``<tool> -> <content>`` joined by ``; ``, or when there are none the first
    non-blank, non-directive line of the last user message.

Every request is recorded (``server.requests``) with its method, path, query, headers and JSON
body, for assertions on the model name, the ``Authorization`` header, the tools offered and
the stream flag. With ``api_key`` set, requests without ``Authorization: Bearer <api_key>`` get
an OpenAI-style 401.
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import threading
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import uvicorn
from responses_stream import response_events, sse
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

_DIRECTIVE = re.compile(r"^\s*#call\s+(?P<name>\S+)(?:\s+(?P<arguments>.*?))?\s*$")
# Fixed, so that identical requests get byte-identical answers.
CREATED = 1_700_000_000


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    """Lower-cased names."""
    body: Any
    """The parsed JSON body; None when there was none or it was not JSON."""

    @property
    def authorization(self) -> str | None:
        return self.headers.get("authorization")

    @property
    def model(self) -> str | None:
        return self.body.get("model") if isinstance(self.body, dict) else None

    @property
    def stream(self) -> bool:
        return isinstance(self.body, dict) and self.body.get("stream") is True

    @property
    def tool_names(self) -> list[str]:
        """Names of the function tools the request offers, in order (Chat Completions
        nests them under ``function``, the Responses API does not)."""
        tools = self.body.get("tools") if isinstance(self.body, dict) else None
        names = []
        for tool in tools or []:
            if isinstance(tool, dict) and isinstance(tool.get("function"), dict):
                names.append(tool["function"]["name"])
            elif isinstance(tool, dict) and tool.get("type") == "function":
                names.append(tool["name"])
        return names

    @property
    def messages(self) -> list[dict[str, Any]]:
        messages = self.body.get("messages") if isinstance(self.body, dict) else None
        return list(messages or [])


@dataclass(frozen=True)
class _Directive:
    name: str
    arguments: str
    """Canonical JSON, or the raw text when ``valid`` is false."""
    valid: bool
    call_id: str


@dataclass(frozen=True)
class _Answer:
    text: str | None
    tool_call: _Directive | None


class OpenAICompatibleServer:
    """Use as ``with OpenAICompatibleServer() as server:``; ``base_url`` ends in ``/v1``."""

    def __init__(self, *, models: Sequence[str] = ("test-model",), api_key: str | None = None):
        self.models = list(models)
        self.api_key = api_key
        self._requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._socket: socket.socket | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.app = Starlette(
            routes=[
                Route("/v1/chat/completions", self._chat_completions, methods=["POST"]),
                Route(
                    "/openai/deployments/{deployment}/chat/completions",
                    self._chat_completions,
                    methods=["POST"],
                ),
                Route("/v1/responses", self._responses, methods=["POST"]),
                Route("/v1/models", self._list_models, methods=["GET"]),
            ]
        )

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._socket is None:
            raise RuntimeError("server is not running")
        return int(self._socket.getsockname()[1])

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.origin}/v1"

    def start(self) -> OpenAICompatibleServer:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self._socket = sock
        config = uvicorn.Config(
            self.app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            ws="none",
            http="h11",
            loop="asyncio",
        )
        server = uvicorn.Server(config)
        self._server = server
        self._thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="openai-compatible", daemon=True
        )
        self._thread.start()
        for _ in range(500):
            if server.started:
                return self
            if not self._thread.is_alive():
                break
            threading.Event().wait(0.01)
        self.stop()
        raise RuntimeError("OpenAI-compatible test server did not start")

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._socket is not None:
            self._socket.close()
        self._server = self._thread = self._socket = None

    def __enter__(self) -> OpenAICompatibleServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- recording -------------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def chat_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path.endswith("/chat/completions")]

    def clear(self) -> None:
        with self._lock:
            self._requests.clear()

    async def _record(self, request: Request) -> RecordedRequest:
        raw = await request.body()
        try:
            body = json.loads(raw) if raw else None
        except json.JSONDecodeError:
            body = None
        recorded = RecordedRequest(
            method=request.method,
            path=request.url.path,
            query=dict(request.query_params),
            headers={name.lower(): value for name, value in request.headers.items()},
            body=body,
        )
        with self._lock:
            self._requests.append(recorded)
        return recorded

    def _unauthorized(self, recorded: RecordedRequest) -> Response | None:
        if self.api_key is None or recorded.authorization == f"Bearer {self.api_key}":
            return None
        return _error(401, "Incorrect API key provided.", "invalid_api_key")

    # -- routes ----------------------------------------------------------------------------

    async def _list_models(self, request: Request) -> Response:
        recorded = await self._record(request)
        if (refused := self._unauthorized(recorded)) is not None:
            return refused
        data = [
            {"id": model, "object": "model", "created": CREATED, "owned_by": "workbench-tests"}
            for model in self.models
        ]
        return JSONResponse({"object": "list", "data": data})

    async def _chat_completions(self, request: Request) -> Response:
        recorded = await self._record(request)
        if (refused := self._unauthorized(recorded)) is not None:
            return refused
        body = recorded.body
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return _error(400, "The request body must be JSON with a messages list.", None)
        model = body.get("model")
        if not isinstance(model, str) or not model:
            return _error(400, "you must provide a model parameter", None)

        answer = _answer(recorded.messages, recorded.tool_names)
        completion_id = f"chatcmpl-{_digest(body)}"
        prompt_tokens = sum(_words(_content_text(m.get("content"))) for m in recorded.messages)
        completion_tokens = _words(
            answer.text
            if answer.tool_call is None
            else f"{answer.tool_call.name} {answer.tool_call.arguments}"
        )
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
        if recorded.stream:
            options = body.get("stream_options")
            include_usage = isinstance(options, dict) and options.get("include_usage") is True
            chunks = _chunks(completion_id, model, answer, usage if include_usage else None)
            return StreamingResponse(_sse(chunks), media_type="text/event-stream")

        message: dict[str, Any] = {"role": "assistant", "content": answer.text}
        if answer.tool_call is not None:
            message["tool_calls"] = [_tool_call_json(answer.tool_call)]
        return JSONResponse(
            {
                "id": completion_id,
                "object": "chat.completion",
                "created": CREATED,
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": message,
                        "logprobs": None,
                        "finish_reason": "stop" if answer.tool_call is None else "tool_calls",
                    }
                ],
                "usage": usage,
            }
        )

    async def _responses(self, request: Request) -> Response:
        recorded = await self._record(request)
        if (refused := self._unauthorized(recorded)) is not None:
            return refused
        body = recorded.body
        if not isinstance(body, dict) or not isinstance(body.get("input"), str | list):
            return _error(400, "The request body must be JSON with an input.", None)
        model = body.get("model")
        if not isinstance(model, str) or not model:
            return _error(400, "you must provide a model parameter", None)

        messages = _chat_messages(body)
        answer = _answer(messages, recorded.tool_names)
        digest = _digest(body)
        call = answer.tool_call
        item: dict[str, Any]
        if call is None:
            item = {
                "type": "message",
                "id": f"msg_{digest}",
                "role": "assistant",
                "status": "completed",
                "content": [{"type": "output_text", "text": answer.text, "annotations": []}],
            }
            output_text = answer.text or ""
        else:
            item = {
                "type": "function_call",
                "id": f"fc_{digest}",
                "call_id": call.call_id,
                "name": call.name,
                "arguments": call.arguments,
                "status": "completed",
            }
            output_text = f"{call.name} {call.arguments}"
        input_tokens = sum(_words(_content_text(m.get("content"))) for m in messages)
        output_tokens = _words(output_text)
        response = {
            "id": f"resp_{digest}",
            "object": "response",
            "created_at": CREATED,
            "model": model,
            "status": "completed",
            "output": [item],
            "parallel_tool_calls": True,
            "tool_choice": "auto",
            "tools": [],
            "usage": {
                "input_tokens": input_tokens,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": output_tokens,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": input_tokens + output_tokens,
            },
        }
        if recorded.stream:
            events = response_events(response)
            return StreamingResponse(sse(events), media_type="text/event-stream")
        return JSONResponse(response)


def _chat_messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    """A Responses API request's instructions and input items as chat messages."""
    messages: list[dict[str, Any]] = []
    if isinstance(body.get("instructions"), str):
        messages.append({"role": "system", "content": body["instructions"]})
    items = body["input"]
    for item in [{"role": "user", "content": items}] if isinstance(items, str) else items:
        if not isinstance(item, dict):
            continue
        kind = item.get("type", "message")
        if kind == "message":
            messages.append({"role": item.get("role"), "content": item.get("content")})
        elif kind == "function_call":
            function = {"name": item.get("name"), "arguments": item.get("arguments")}
            call = {"id": item.get("call_id"), "type": "function", "function": function}
            messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            output = item.get("output")
            messages.append(
                {"role": "tool", "tool_call_id": item.get("call_id"), "content": output}
            )
    return messages


def _error(status: int, message: str, code: str | None) -> Response:
    kind = "invalid_request_error"
    return JSONResponse(
        {"error": {"message": message, "type": kind, "param": None, "code": code}},
        status_code=status,
    )


def _content_text(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            part["text"]
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""


def _words(text: str) -> int:
    return len(text.split())


def _digest(value: object) -> str:
    encoded = json.dumps(value, sort_keys=True, default=str).encode()
    return hashlib.sha256(encoded).hexdigest()[:24]


def _directives(text: str) -> list[_Directive]:
    directives: list[_Directive] = []
    for line in text.splitlines():
        match = _DIRECTIVE.match(line)
        if match is None:
            continue
        name, raw = match["name"], match["arguments"] or "{}"
        try:
            parsed = json.loads(raw)
        except json.JSONDecodeError:
            parsed = None
        valid = isinstance(parsed, dict)
        arguments = (
            json.dumps(parsed, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
            if valid
            else raw
        )
        seed = f"{len(directives)}:{name}:{arguments}"
        call_id = f"call_{hashlib.sha256(seed.encode()).hexdigest()[:24]}"
        directives.append(_Directive(name, arguments, valid, call_id))
    return directives


def _answer(messages: list[dict[str, Any]], offered: list[str]) -> _Answer:
    last_user = next(
        (_content_text(m.get("content")) for m in reversed(messages) if m.get("role") == "user"),
        "",
    )
    results = [m for m in messages if m.get("role") == "tool"]
    done = {m.get("tool_call_id") for m in results}
    pending = next((d for d in _directives(last_user) if d.call_id not in done), None)
    if pending is not None:
        if not pending.valid:
            return _Answer(f"compatible: invalid JSON arguments for tool {pending.name!r}", None)
        if pending.name not in offered:
            available = ", ".join(offered) or "none"
            return _Answer(
                f"compatible: tool {pending.name!r} is not offered (offered: {available})", None
            )
        return _Answer(None, pending)

    names = {
        call.get("id"): call.get("function", {}).get("name")
        for m in messages
        if m.get("role") == "assistant"
        for call in m.get("tool_calls") or []
        if isinstance(call, dict)
    }
    if results:
        summary = "; ".join(
            f"{names.get(m.get('tool_call_id'), m.get('tool_call_id'))} -> "
            f"{_content_text(m.get('content'))}"
            for m in results
        )
    else:
        summary = next(
            (
                line.strip()
                for line in last_user.splitlines()
                if line.strip() and _DIRECTIVE.match(line) is None
            ),
            "(empty)",
        )
    return _Answer(f"compatible: {summary}", None)


def _tool_call_json(directive: _Directive) -> dict[str, Any]:
    return {
        "id": directive.call_id,
        "type": "function",
        "function": {"name": directive.name, "arguments": directive.arguments},
    }


def _chunks(
    completion_id: str, model: str, answer: _Answer, usage: dict[str, int] | None
) -> list[dict[str, Any]]:
    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        return {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": model,
            "choices": [
                {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            ],
        }

    chunks: list[dict[str, Any]] = []
    if answer.tool_call is not None:
        call = answer.tool_call
        # The first chunk names the call, the arguments follow in pieces, as real servers do.
        chunks.append(
            chunk(
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": call.call_id,
                            "type": "function",
                            "function": {"name": call.name, "arguments": ""},
                        }
                    ],
                }
            )
        )
        middle = len(call.arguments) // 2
        for piece in (call.arguments[:middle], call.arguments[middle:]):
            if piece:
                chunks.append(
                    chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})
                )
        chunks.append(chunk({}, "tool_calls"))
    else:
        text = answer.text or ""
        chunks.append(chunk({"role": "assistant", "content": ""}))
        # One delta per word (with its trailing space), so consumers see real increments.
        chunks.extend(chunk({"content": piece}) for piece in re.findall(r"\S+\s*|\s+", text))
        chunks.append(chunk({}, "stop"))
    if usage is not None:
        chunks.append(
            {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": CREATED,
                "model": model,
                "choices": [],
                "usage": usage,
            }
        )
    return chunks


async def _sse(chunks: list[dict[str, Any]]) -> AsyncIterator[bytes]:
    for item in chunks:
        yield f"data: {json.dumps(item, separators=(',', ':'))}\n\n".encode()
    yield b"data: [DONE]\n\n"
