"""A thread run's agents, input and messages.

The thread's agent comes from the agent registry, its instructions with its valid soul
projected after them (`agentdefs/soul.py`): a specialist answers alone; a router
gets one SDK handoff per specialist it routes to, each described with the specialist's
keywords and taking the router's stated reason as its input. Each specialist gets the
tools it lists that its own lane allows, governed by that lane. The run's input is the
conversation so far (what the user and the agents said); what the agents said and did in
this run comes back as messages, written to the history with the run's completion.
"""

import json
from dataclasses import dataclass, field
from typing import Any

from agents import Agent, ItemHelpers, handoff
from agents.items import (
    HandoffOutputItem,
    MessageOutputItem,
    RunItem,
    ToolCallItem,
    ToolCallOutputItem,
)
from pydantic import BaseModel

from ledger.agent_registry import AgentDefinition, AgentRegistry, load_agents
from ledger.models import ThreadMessage
from ledger.policy import PolicyConfig
from ledger.run_writes import NewMessage
from worker.context import RunContext
from worker.tools import tools_for


class RouteChoice(BaseModel):
    """What a router says when it hands over."""

    reason: str


@dataclass
class _Loaded:
    """The agents file of the policy the worker runs under, read once, not per thread
    run, and the agents built from it. The policy is kept with them, so a new policy
    object never meets a stale registry or agent.

    An agent holds nothing of a run (its tools reach their run through the context, see
    `worker/tools.py`), and the SDK lets runs share one, concurrent runs too (it refuses
    only a run that changes an agent's tools, which none here does): each is built once
    per agent type and tool setting. Built per run, a router's handoffs (a JSON schema
    each) and its specialists were 5 % of a conversation's CPU."""

    policy: PolicyConfig
    registry: AgentRegistry
    agents: dict[tuple[str, bool], Agent[RunContext]] = field(default_factory=dict)


_loaded: _Loaded | None = None


def _load(run: RunContext) -> _Loaded:
    global _loaded
    if _loaded is None or _loaded.policy is not run.policy:
        _loaded = _Loaded(run.policy, load_agents(run.policy))
    return _loaded


def agents_registry(run: RunContext) -> AgentRegistry:
    """The agents file of the policy the worker runs under, read once, not per run."""
    return _load(run).registry


def _specialist(
    run: RunContext, registry: AgentRegistry, definition: AgentDefinition, tools_enabled: bool
) -> Agent[RunContext]:
    lane = registry.lane_of(definition.id)
    return Agent(
        name=definition.id,
        instructions=registry.instructions_of(definition.id),
        tools=(
            tools_for(run, lane=lane, names=registry.tools_of(definition.id))
            if tools_enabled
            else []
        ),
    )


def _noted(context: Any, choice: RouteChoice) -> None:
    """The reason is kept in the handoff's call and message; nothing else to do."""


def conversation_agent(run: RunContext) -> Agent[RunContext]:
    loaded = _load(run)
    agent_type = run.task.agent_type or ""
    # The client may turn tools off for its turn (agent_config.tools_enabled).
    tools_enabled = bool((run.task.run_options or {}).get("tools_enabled", True))
    key = (agent_type, tools_enabled)
    agent = loaded.agents.get(key)
    if agent is None:
        agent = loaded.agents[key] = _built(run, loaded.registry, agent_type, tools_enabled)
    return agent


def _built(
    run: RunContext, registry: AgentRegistry, agent_type: str, tools_enabled: bool
) -> Agent[RunContext]:
    definition = registry[agent_type]
    if definition.type == "specialist":
        return _specialist(run, registry, definition, tools_enabled)
    handoffs = [
        handoff(
            _specialist(run, registry, specialist, tools_enabled),
            tool_description_override=(
                f"{specialist.description} Keywords: {', '.join(specialist.keywords)}."
            ),
            input_type=RouteChoice,
            on_handoff=_noted,
        )
        for specialist in registry.specialists_of(definition.id)
    ]
    return Agent(
        name=definition.id, instructions=registry.instructions_of(definition.id), handoffs=handoffs
    )


def soul_digests(run: RunContext) -> dict[str, str]:
    """The digest of each valid soul among the run's agents (its thread's agent and
    the specialists it may hand to), for the run's trace."""
    registry = agents_registry(run)
    agent_id = run.task.agent_type or ""
    agents = [agent_id, *(s.id for s in registry.specialists_of(agent_id))]
    souls = {agent: registry.soul_of(agent) for agent in agents}
    return {agent: soul.digest for agent, soul in souls.items() if soul.valid and soul.digest}


def history_input(history: list[ThreadMessage]) -> list[Any]:
    """The conversation so far as the model's input: the user's and agents' words."""
    return [
        {"role": message.role, "content": message.content}
        for message in history
        if message.role in ("user", "assistant")
    ]


def run_messages(items: list[RunItem]) -> list[NewMessage]:
    """What the agents said and did in this run, in order, as thread messages."""
    messages: list[NewMessage] = []
    reasons: dict[str, str] = {}
    for item in items:
        agent = item.agent.name
        if isinstance(item, MessageOutputItem):
            messages.append(NewMessage("assistant", ItemHelpers.text_message_output(item), agent))
        elif isinstance(item, ToolCallItem):
            raw = item.raw_item
            name, call_id = getattr(raw, "name", ""), getattr(raw, "call_id", "")
            arguments = _parsed(getattr(raw, "arguments", "") or "")
            messages.append(
                NewMessage(
                    "tool_call",
                    name,
                    agent,
                    {"tool": name, "call_id": call_id, "arguments": arguments},
                )
            )
        elif isinstance(item, ToolCallOutputItem):
            call_id = _field(item.raw_item, "call_id")
            messages.append(
                NewMessage("tool_result", str(item.output), agent, {"call_id": call_id})
            )
        elif isinstance(item, HandoffOutputItem):
            target = item.target_agent.name
            call_id = _field(item.raw_item, "call_id")
            messages.append(
                NewMessage(
                    "handoff",
                    target,
                    item.source_agent.name,
                    {"to": target, "reason": reasons.get(call_id, "")},
                )
            )
        elif item.type == "handoff_call_item":
            raw = item.raw_item
            reason = _parsed(getattr(raw, "arguments", "") or "")
            if isinstance(reason, dict):
                reasons[getattr(raw, "call_id", "")] = str(reason.get("reason", ""))
    return messages


def _parsed(arguments: str) -> Any:
    try:
        return json.loads(arguments)
    except json.JSONDecodeError:
        return arguments


def _field(raw: Any, name: str) -> str:
    return str(raw.get(name, "") if isinstance(raw, dict) else getattr(raw, name, ""))
