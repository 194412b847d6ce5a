"""The worker's side of client-side sessions, without a database: the gateway the API
describes is the tools the worker runs, and a turn's context is rebuilt from the
history by the chain of responses it follows."""

from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

from ledger.models import ThreadMessage
from ledger.session_steps import INFERENCE, SESSION_STEP, TOOL_CALL, response_id
from ledger.tool_gateway import BUILTIN_TOOLS
from worker.session_context import Chain, ContextCache, Entry, answers, chain, items
from worker.tools import TOOLS, _function_tool


def test_the_gateway_the_api_describes_is_the_tools_the_worker_runs() -> None:
    assert list(BUILTIN_TOOLS) == list(TOOLS)
    for name, described in BUILTIN_TOOLS.items():
        tool = _function_tool(TOOLS[name], False)
        assert (tool.name, tool.description) == (described.name, described.description)
        assert tool.params_json_schema == described.parameters
        assert TOOLS[name].mutation_level == described.mutation_level


class _History:
    """Messages as steps leave them (see ledger/session_steps.py)."""

    def __init__(self) -> None:
        self.messages: list[ThreadMessage] = []

    def _add(self, task: UUID, role: str, content: str, **data: Any) -> None:
        self.messages.append(
            ThreadMessage(
                seq=len(self.messages) + 1,
                task_id=task,
                role=role,  # type: ignore[arg-type]
                agent=None,
                content=content,
                data=data,
                created_at=datetime.now(UTC),
            )
        )

    def turn(self, text: str, previous: str | None, *, calls: tuple[str, ...] = ()) -> str:
        task = uuid4()
        self._add(task, "user", text, session_step=INFERENCE, previous_response_id=previous)
        answer = response_id(task, 1)
        marked = {SESSION_STEP: INFERENCE, "response_id": answer}
        for call in calls:
            self._add(task, "tool_call", "read_artifact", call_id=call, tool="read_artifact",
                      arguments={"name": call}, **marked)  # fmt: skip
        if not calls:
            self._add(task, "assistant", f"answer to {text}", **marked)
        return answer

    def result(self, call: str) -> None:
        task = uuid4()
        marked = {SESSION_STEP: TOOL_CALL, "call_id": call, "tool": "read_artifact"}
        self._add(task, "tool_call", "read_artifact", arguments={"name": call}, **marked)
        self._add(task, "tool_result", f"result of {call}", **marked)


def _shape(entries: list[Entry]) -> list[str]:
    return [item.get("type") or f"{item['role']}:{item['content']}" for item in items(entries)]


def test_a_chain_holds_each_call_with_its_result_and_leaves_other_branches_out() -> None:
    history = _History()
    first = history.turn("look", None, calls=("c1", "c2"))
    history.result("c1")  # c2 is never executed
    second = history.turn("go on", first)
    # A branch from the first response again: the second turn is not its context.
    third = history.turn("other way", first)
    rebuilt = chain(history.messages, third)
    assert rebuilt is not None
    assert _shape(list(rebuilt.entries)) == [
        "user:look",
        "function_call",  # c1 only: c2 had no result, so the model never sees it
        "function_call_output",
        "user:other way",
        "assistant:answer to other way",
    ]
    assert [i.get("call_id") for i in items(list(rebuilt.entries)) if "call_id" in i] == [
        "c1",
        "c1",
    ]
    assert chain(history.messages, second) is not None
    assert chain(history.messages, "resp_unknown") is None


def test_results_are_those_recorded_before_the_next_turn_of_the_chain() -> None:
    history = _History()
    first = history.turn("look", None, calls=("c1",))
    user_seq = history.messages[0].seq
    history.result("c1")
    later = history.messages[-1].seq + 1
    assert [e.content for e in answers(history.messages, ("c1",), user_seq, later)] == [
        "result of c1"
    ]
    assert answers(history.messages, ("c1",), user_seq, user_seq + 1) == []
    rebuilt = chain(history.messages, first)
    assert rebuilt is not None and rebuilt.calls == ("c1",) and rebuilt.after_seq == user_seq


def test_the_cache_forgets_the_least_recently_used() -> None:
    cache = ContextCache(size=2)
    for key in ("a", "b"):
        cache.put(key, Chain())
    assert cache.get("a") is not None  # a is now the most recently used
    cache.put("c", Chain())
    assert cache.get("b") is None and cache.get("a") is not None
    assert (cache.hits, cache.misses) == (2, 1)
