"""The agent registry: the agents a conversation can talk to, from the agents file.

The file is YAML (`WORKBENCH_AGENTS_FILE`, else the `agents.yaml` shipped beside this
module, next to the lanes file). It is checked against the policy when it is loaded: an
agent's lane, tools and providers must exist there, and a router may route only to
specialists, so a bad file fails start-up with the reason rather than a conversation at
run time. Reading the registry needs no model client.
"""

import os
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ledger.errors import ConfigError
from ledger.policy import Lane, PolicyConfig

DEFAULT_AGENTS_FILE = Path(__file__).with_name("agents.yaml")

AgentType = Literal["router", "specialist"]


class AgentDefinition(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    type: AgentType
    name: str
    description: str = ""
    capabilities: list[str] = Field(default_factory=list)
    instructions: str
    tools: list[str] = Field(default_factory=list)
    lane: str
    allowed_providers: list[str]
    # A router's specialists, in the order it considers them.
    routes_to: list[str] = Field(default_factory=list)
    # Words that point a message at this specialist (the offline model routes by them).
    keywords: list[str] = Field(default_factory=list)


class AgentRegistry:
    """The loaded, checked agents file."""

    def __init__(self, agents: dict[str, AgentDefinition], policy: PolicyConfig) -> None:
        self._agents = agents
        self._policy = policy

    def __contains__(self, agent_id: object) -> bool:
        return agent_id in self._agents

    def __getitem__(self, agent_id: str) -> AgentDefinition:
        return self._agents[agent_id]

    def all(self) -> list[AgentDefinition]:
        return list(self._agents.values())

    def ids(self) -> list[str]:
        return list(self._agents)

    def lane_of(self, agent_id: str) -> Lane:
        return self._policy.lanes[self._agents[agent_id].lane]

    def specialists_of(self, agent_id: str) -> list[AgentDefinition]:
        """The agents `agent_id` may hand a conversation to (none for a specialist)."""
        return [self._agents[target] for target in self._agents[agent_id].routes_to]

    def tools_of(self, agent_id: str) -> list[str]:
        """The tools the agent lists that its lane allows."""
        allowed = set(self.lane_of(agent_id).tools)
        return [tool for tool in self._agents[agent_id].tools if tool in allowed]


def _check(agents: dict[str, AgentDefinition], policy: PolicyConfig) -> None:
    for agent_id, agent in agents.items():
        if agent.id != agent_id:
            raise ValueError(f"agent {agent_id}: id {agent.id!r} differs from its key")
        if agent.lane not in policy.lanes:
            raise ValueError(f"agent {agent_id}: unknown lane {agent.lane!r}")
        unknown = set(agent.allowed_providers) - set(policy.providers)
        if unknown:
            raise ValueError(f"agent {agent_id}: unknown providers {sorted(unknown)}")
        if agent.type == "specialist" and agent.routes_to:
            raise ValueError(f"agent {agent_id}: a specialist routes to no one")
        if agent.type == "router" and not agent.routes_to:
            raise ValueError(f"agent {agent_id}: a router needs routes_to")
        for target in agent.routes_to:
            if target not in agents or agents[target].type != "specialist":
                raise ValueError(f"agent {agent_id}: routes_to {target!r} is not a specialist")


def load_agents(policy: PolicyConfig, path: str | os.PathLike[str] | None = None) -> AgentRegistry:
    """Read and check the agents file; a bad file fails start-up with the reason."""
    source = Path(path or os.environ.get("WORKBENCH_AGENTS_FILE") or DEFAULT_AGENTS_FILE)
    try:
        raw = yaml.safe_load(source.read_text())
        agents = {
            agent_id: AgentDefinition.model_validate({"id": agent_id, **(body or {})})
            for agent_id, body in (raw or {}).get("agents", {}).items()
        }
        _check(agents, policy)
    except (OSError, yaml.YAMLError, ValidationError, ValueError, TypeError) as error:
        raise ConfigError(f"cannot load agents file {source}: {error}") from error
    return AgentRegistry(agents, policy)
