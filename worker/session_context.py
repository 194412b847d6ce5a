"""The model's context for an inference step of a client-side session.

A turn's context is the chain of turns it follows (each turn names the response it
follows, `previous_response_id`), rebuilt from the thread's messages
(`ledger/session_steps.py` says what each step leaves there). For each turn of the
chain, in order: its input (a user message), the model's text and the calls it asked
for, then the result of each of those calls that the client executed before the next
turn of the chain was taken, paired with its call by `call_id`. A call the client did
not execute in time is left out with its result: a model is never shown a call without
an answer (Chat Completions refuses that). Turns off the chain (an earlier branch) are
not in it.

`CONTEXTS`, a small in-process LRU cache keyed by response id, keeps the chain through
each response this worker answered; a hit reads only the messages written since (the
results of its calls, the new input). A miss (another worker answered it, a restart)
rebuilds the same chain from the whole history: both are built from the messages as
stored (redacted), by the same functions.

Pure Python on `ThreadMessage`s, no SDK: items are Responses API input dicts, which
every SDK model accepts.
"""

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ledger.models import ThreadMessage
from ledger.session_steps import INFERENCE, SESSION_STEP, TOOL_CALL, arguments_text

Item = dict[str, Any]
CACHE_SIZE = 256  # chains kept per worker process; one per recent response


@dataclass(frozen=True)
class Entry:
    """A message of the context, as stored: role, content and data."""

    role: str
    content: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Chain:
    """The context through one response: its entries; the calls that response asked
    for (their results are read when the next turn is taken); the sequence number of its
    turn's input, after which those results are found."""

    entries: tuple[Entry, ...] = ()
    calls: tuple[str, ...] = ()
    after_seq: int = 0


def entry(message: ThreadMessage) -> Entry:
    return Entry(message.role, message.content, message.data)


@dataclass
class _Turn:
    user: ThreadMessage
    outputs: list[ThreadMessage]

    @property
    def previous(self) -> str | None:
        value = self.user.data.get("previous_response_id")
        return value if isinstance(value, str) else None

    @property
    def calls(self) -> tuple[str, ...]:
        return tuple(str(m.data.get("call_id")) for m in self.outputs if m.role == "tool_call")


def chain(history: Sequence[ThreadMessage], response_id: str) -> Chain | None:
    """The chain through `response_id` rebuilt from the whole history (None when no
    answered turn has that id)."""
    turns = _turns(history)
    order: list[_Turn] = []
    current: str | None = response_id
    while current is not None and current in turns and turns[current] not in order:
        order.append(turns[current])
        current = order[-1].previous
    if not order:
        return None
    order.reverse()
    entries: list[Entry] = []
    for index, turn in enumerate(order):
        entries += [entry(turn.user), *map(entry, turn.outputs)]
        if index + 1 < len(order):
            entries += answers(history, turn.calls, turn.user.seq, order[index + 1].user.seq)
    last = order[-1]
    return Chain(tuple(entries), last.calls, last.user.seq)


def _turns(history: Sequence[ThreadMessage]) -> dict[str, _Turn]:
    """The answered inference turns, by response id."""
    inputs = {
        m.task_id: m for m in history if m.role == "user" and m.data.get(SESSION_STEP) == INFERENCE
    }
    turns: dict[str, _Turn] = {}
    for message in history:
        answer = message.data.get("response_id")
        if isinstance(answer, str) and message.task_id in inputs:
            turns.setdefault(answer, _Turn(inputs[message.task_id], [])).outputs.append(message)
    return turns


def answers(
    messages: Sequence[ThreadMessage], calls: Sequence[str], after_seq: int, before_seq: int
) -> list[Entry]:
    """The results of `calls` recorded between two sequence numbers, in the order they
    were recorded, the first for each call."""
    wanted, found = set(calls), []
    for message in messages:
        call_id = message.data.get("call_id")
        if (
            message.role == "tool_result"
            and message.data.get(SESSION_STEP) == TOOL_CALL
            and call_id in wanted
            and after_seq < message.seq < before_seq
        ):
            wanted.discard(call_id)
            found.append(entry(message))
    return found


def items(entries: Sequence[Entry]) -> list[Item]:
    """The model's input from context entries: a call goes in only with its result."""
    answered = {e.data.get("call_id") for e in entries if e.role == "tool_result"}
    built: list[Item] = []
    for each in entries:
        if each.role == "user":
            built.append({"role": "user", "content": each.content})
        elif each.role == "assistant" and each.content:
            built.append({"role": "assistant", "content": each.content})
        elif each.role == "tool_call" and each.data.get("call_id") in answered:
            built.append(
                {
                    "type": "function_call",
                    "call_id": each.data["call_id"],
                    "name": str(each.data.get("tool", each.content)),
                    "arguments": arguments_text(each.data.get("arguments", {})),
                }
            )
        elif each.role == "tool_result":
            built.append(
                {
                    "type": "function_call_output",
                    "call_id": each.data.get("call_id"),
                    "output": each.content,
                }
            )
    return built


class ContextCache:
    """Chains by response id, least recently used first out; counts hits and misses."""

    def __init__(self, size: int = CACHE_SIZE) -> None:
        self._size = size
        self._chains: OrderedDict[str, Chain] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, response_id: str) -> Chain | None:
        found = self._chains.get(response_id)
        if found is None:
            self.misses += 1
            return None
        self.hits += 1
        self._chains.move_to_end(response_id)
        return found

    def put(self, response_id: str, value: Chain) -> None:
        self._chains[response_id] = value
        self._chains.move_to_end(response_id)
        while len(self._chains) > self._size:
            self._chains.popitem(last=False)

    def clear(self) -> None:
        self._chains.clear()


CONTEXTS = ContextCache()
