"""The built-in tools as a client sees them, and an agent's tool gateway.

A client-side session's client asks the model for a turn with the gateway's tools and
executes the calls it gets back through the gateway; this module describes them to the
API, which must not import the Agents SDK. The worker executes them with the real SDK
tools of `worker/tools.py`, whose names, mutation levels, descriptions and parameter
schemas `tests/worker/test_client_session.py` holds equal to these.
"""

from typing import Any

from pydantic import BaseModel, ConfigDict

from ledger.agent_registry import AgentRegistry
from ledger.policy import PolicyConfig


class BuiltinTool(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str
    mutation_level: str
    # The JSON Schema of the call's arguments (an object), as the SDK derives it from the
    # tool's signature and docstring (strict: every property required, no others).
    parameters: dict[str, Any]


class GatewayTool(BuiltinTool):
    """A tool of a session's gateway: a call above the lane's tool_approval_above waits
    for an operator's approval before it runs."""

    needs_approval: bool


def _parameters(tool: str, fields: dict[str, str]) -> dict[str, Any]:
    return {
        "properties": {
            name: {"description": description, "title": name.title(), "type": "string"}
            for name, description in fields.items()
        },
        "required": list(fields),
        "title": f"{tool}_args",
        "type": "object",
        "additionalProperties": False,
    }


BUILTIN_TOOLS: dict[str, BuiltinTool] = {
    tool.name: tool
    for tool in (
        BuiltinTool(
            name="read_artifact",
            description="Read an artifact of this task by name (the newest one with that name).",
            mutation_level="read_only",
            parameters=_parameters(
                "read_artifact", {"name": 'The artifact\'s name, e.g. "final_output.md".'}
            ),
        ),
        BuiltinTool(
            name="write_artifact",
            description="Store a text artifact for this task.",
            mutation_level="propose",
            parameters=_parameters(
                "write_artifact", {"name": "The artifact's file name.", "content": "Its text."}
            ),
        ),
        BuiltinTool(
            name="http_get",
            description="Fetch a URL with HTTP GET; only hosts the lane allows are reachable.",
            mutation_level="read_only",
            parameters=_parameters("http_get", {"url": "An http(s) URL."}),
        ),
        BuiltinTool(
            name="propose_change",
            description=(
                "Propose a change for a human to apply; it is stored as an artifact, not applied."
            ),
            mutation_level="propose",
            parameters=_parameters(
                "propose_change",
                {
                    "summary": "One line saying what the change does.",
                    "change": "The change itself (a diff, a command, a configuration).",
                },
            ),
        ),
    )
}


def gateway(registry: AgentRegistry, policy: PolicyConfig, agent_id: str) -> list[GatewayTool]:
    """The tools agent `agent_id` lists that its lane allows, in the agent's order, each
    saying whether a call needs an operator's approval in that lane."""
    lane = registry.lane_of(agent_id)
    return [
        GatewayTool(
            **BUILTIN_TOOLS[name].model_dump(),
            needs_approval=lane.tool_approval_above is not None
            and policy.exceeds(BUILTIN_TOOLS[name].mutation_level, lane.tool_approval_above),
        )
        for name in registry.tools_of(agent_id)
    ]
