"""A run's live progress as trace events: the agent's text as the model writes it
(`text.delta`) and what the agent is doing (`agent.status`: thinking, executing,
complete).

Progress is taken where the SDK produces it, not from `RunResultStreaming.stream_events()`:
that queue is read by another task, which may lag the run by any number of events (a
model that never awaits, like the offline one, runs whole turns before the reader wakes),
so events taken from it would land in the trace after the spans of what they describe.
The model's own stream (through `StreamingModelProvider`) and the run hooks see each
event before the SDK ends the span it belongs to.

Coalescing: text is buffered and written at most every `TEXT_INTERVAL_SECONDS`, each
event holding the text since the previous one; the last of a model turn has
`is_final: true`. A status is written only when it changes. The buffered events join the
run's SDK spans (`worker/spans.py`) and are written to the ledger at most as often: a run
that ends within the first interval costs no write of its own, they go in with its
outcome. (Writing the first progress at once showed a run's start sooner but cost one
fenced write per run: the offline pipeline in `make bench` fell from 90 to 70 tasks/s.)
A conversation's run (`first_text_at_once`) is read by a person waiting for its answer:
its first text is written as soon as it comes, with the progress before it (right after a
write still in flight, not an interval later), and what follows is coalesced as above.
The status before it is not hurried: written at once, it made the first text wait an
interval. With the offline model this one write per thread run is what brings the first
text ahead of the run's outcome (the rest of the run, its output artifact and its
completion took about 45 ms of the 100 ms a user waited at p50 under 50 conversations).

Redaction: the ledger redacts every event it writes, but a secret split across two
chunks would match no form in either. So each chunk is cut from the redaction of the
whole turn's text so far, and, until the turn ends, the text after its last complete word
is held back: a token is never sent half-written, and a key written before its value is
seen with it.
"""

import asyncio
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Literal
from uuid import uuid4

import structlog
from agents.models.interface import Model, ModelProvider
from openai.types.responses import ResponseCompletedEvent, ResponseTextDeltaEvent

from ledger.leases import SpanEvent
from ledger.redaction import Redactor
from worker import spans

log = structlog.get_logger(__name__)

# A few events a second: live enough to read along, few enough to cost little.
TEXT_INTERVAL_SECONDS = 0.25
_now = time.monotonic  # the clock the interval is measured on

State = Literal["thinking", "executing", "complete"]
# The last word and the whitespace after it (an empty match when there is neither).
_LAST_WORD = re.compile(r"\S*\s*\Z")


class RunStream:
    """One run's progress, buffered as trace events under its SDK trace id."""

    def __init__(
        self,
        trace_id: str,
        redactor: Redactor,
        flush: Callable[[], Awaitable[object]],
        interval: float | None = None,
        *,
        first_text_at_once: bool = False,
    ) -> None:
        self._trace_id = trace_id
        self._redactor = redactor
        self._flush = flush
        # Read per run, so a deployment (or a test) can set it before runs start.
        self._interval = TEXT_INTERVAL_SECONDS if interval is None else interval
        self._agent = ""
        self._status: tuple[State, str] | None = None
        self._turn = ""  # the model turn's text so far, as written
        self._sent = 0  # how much of its redaction has been sent
        # The first write waits an interval too (a conversation's first text excepted): a
        # run that ends within it (an offline or short turn) costs no write of its own,
        # its events go in with the outcome.
        self._last_write = _now()
        self._text_at_once = first_text_at_once  # until the first text is due
        self._timer: asyncio.Handle | None = None
        self._writing: asyncio.Task[None] | None = None
        self._closed = False

    def turn_started(self, agent: str) -> None:
        self._agent = agent
        self._turn, self._sent = "", 0
        self._set_status("thinking")

    def text(self, delta: str) -> None:
        if not delta:
            return
        self._turn += delta
        if self._text_at_once and self._whole_words(self._turn):
            self._write_soon()
        else:
            self._wake()

    def turn_ended(self) -> bool:
        """The model's turn is over: send the rest of its text. True when it had text."""
        had_text = bool(self._turn)
        self._send_text(final=True)
        if had_text and self._text_at_once:
            self._write_soon()
        self._turn, self._sent = "", 0
        return had_text

    def tool_started(self, agent: str) -> None:
        self._set_status("executing", agent)

    def completed(self) -> None:
        """The run finished (after `close`): the status goes in with the run's outcome."""
        self._set_status("complete")

    async def close(self) -> None:
        """Stop the timer and wait for a write in flight, so nothing buffered by this run
        is written after (or in a race with) the run's outcome: what it buffers from now
        on is written with the outcome."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._writing is not None:
            await self._writing

    def _set_status(self, state: State, agent: str | None = None) -> None:
        status = (state, agent or self._agent)
        if status == self._status:
            return
        self._status = status
        self._add("agent.status", f"{status[1]} {state}", {"state": state, "agent": status[1]})

    def _send_text(self, *, final: bool) -> None:
        text = self._turn if final else self._whole_words(self._turn)
        if not text:
            return
        redacted = self._redactor.text(text)
        chunk = redacted[self._sent :]
        if not chunk and not final:
            return
        # An empty final chunk still ends the turn for a reader (possible when redacting
        # the whole text shortened what was already sent).
        self._sent = max(self._sent, len(redacted))
        data = {"text": chunk, "is_final": final, "agent": self._agent}
        self._add("text.delta", f"{self._agent} text", data)

    @staticmethod
    def _whole_words(text: str) -> str:
        """The text up to its last word: that word may still be growing."""
        return _LAST_WORD.sub("", text, count=1)

    def _add(self, kind: str, message: str, data: dict[str, Any]) -> None:
        # A fresh id per event: a run resumed after an approval has the same trace id, and
        # the ledger skips an event whose id it has already stored.
        event = SpanEvent(f"stream_{uuid4().hex}", kind, message, data)
        spans.add(self._trace_id, event)
        self._wake()

    def _wake(self) -> None:
        if self._timer is None and not self._closed:
            delay = max(0.0, self._last_write + self._interval - _now())
            self._timer = asyncio.get_running_loop().call_later(delay, self._tick)

    def _write_soon(self) -> None:
        """The first text: due now, not at the interval the progress before it set."""
        self._text_at_once = False
        if self._closed:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_soon(self._tick, True)

    def _tick(self, at_once: bool = False) -> None:
        self._timer = None
        self._send_text(final=False)
        if self._writing is not None and not self._writing.done():
            # Still writing the last batch: this one waits its turn, the first text only
            # until that write is done.
            if at_once:
                self._writing.add_done_callback(self._after_write)
            else:
                self._wake()
            return
        self._last_write = _now()
        self._writing = asyncio.get_running_loop().create_task(self._write())

    def _after_write(self, _: object) -> None:
        if self._closed:
            return
        if self._timer is not None:  # armed meanwhile: this tick sends what it would
            self._timer.cancel()
        self._tick(at_once=True)

    async def _write(self) -> None:
        try:
            await self._flush()
        except Exception as error:  # the spans went back; the next write takes them
            log.warning("stream_write_failed", trace_id=self._trace_id, error=type(error).__name__)


class StreamingModelProvider(ModelProvider):
    """The run's provider, its models reporting their streamed text to `stream`."""

    def __init__(
        self, provider: ModelProvider, stream: RunStream, streamed: Callable[[], None]
    ) -> None:
        self._provider = provider
        self._stream = stream
        self._streamed = streamed

    def get_model(self, model_name: str | None) -> Model:
        return _StreamingModel(self._provider.get_model(model_name), self._stream, self._streamed)

    async def aclose(self) -> None:
        await self._provider.aclose()


class _StreamingModel(Model):
    def __init__(self, model: Model, stream: RunStream, streamed: Callable[[], None]) -> None:
        self._model = model
        self._stream = stream
        self._streamed = streamed

    async def get_response(self, *args: Any, **kwargs: Any) -> Any:
        return await self._model.get_response(*args, **kwargs)

    async def stream_response(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        async for event in self._model.stream_response(*args, **kwargs):
            if isinstance(event, ResponseTextDeltaEvent):
                self._stream.text(event.delta)
            elif isinstance(event, ResponseCompletedEvent) and self._stream.turn_ended():
                # The model's span is still open (its stream is suspended here): it is
                # marked so its text is not shown a second time.
                self._streamed()
            yield event

    def get_retry_advice(self, request: Any) -> Any:
        return self._model.get_retry_advice(request)

    async def close(self) -> None:
        await self._model.close()
