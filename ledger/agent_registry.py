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

import structlog
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agentdefs import soul
from agentdefs.soul import Soul
from ledger.errors import ConfigError
from ledger.policy import Lane, PolicyConfig

DEFAULT_AGENTS_FILE = Path(__file__).with_name("agents.yaml")
log = structlog.get_logger(__name__)

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
    # Its soul document (markdown with frontmatter, `agentdefs/soul.py`), a path inside
    # the agents file's directory. A valid soul joins its instructions; an invalid one
    # is reported by GET /api/agent/soul and left out.
    soul: str | None = None


class AgentRegistry:
    """The loaded, checked agents file."""

    def __init__(
        self,
        agents: dict[str, AgentDefinition],
        policy: PolicyConfig,
        souls: dict[str, Soul] | None = None,
    ) -> None:
        self._agents = agents
        self._policy = policy
        self._souls = souls or {}

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

    def soul_of(self, agent_id: str) -> Soul:
        """The agent's soul as parsed at load (`missing` for an agent without one, or
        an agent not in the file: a lane's own)."""
        return self._souls.get(agent_id) or soul.missing()

    def instructions_of(self, agent_id: str) -> str:
        """The agent's instructions, its valid soul projected after them."""
        instructions = self._agents[agent_id].instructions
        parsed = self.soul_of(agent_id)
        if not (parsed.present and parsed.valid):
            return instructions
        projection, _ = soul.project(parsed)
        return f"{instructions}\n\n{projection}"

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
        souls = {
            agent_id: _soul(source.parent, agent.soul)
            for agent_id, agent in agents.items()
            if agent.soul is not None
        }
    except (OSError, yaml.YAMLError, ValidationError, ValueError, TypeError) as error:
        raise ConfigError(f"cannot load agents file {source}: {error}") from error
    for agent_id, parsed in souls.items():
        if not parsed.valid:
            log.warning(
                "soul_invalid",
                agent=agent_id,
                codes=[diagnostic.code for diagnostic in parsed.diagnostics],
            )
    return AgentRegistry(agents, policy, souls)


def _soul(directory: Path, relative: str) -> Soul:
    """A soul file, which must be inside the agents file's directory."""
    path = (directory / relative).resolve()
    if not path.is_relative_to(directory.resolve()):
        raise ValueError(f"soul {relative!r} is outside {directory}")
    return soul.parse(path.read_text(), source_path=relative)
