"""The agents file: what ships with the package, and files that do not hold together."""

import pytest
import yaml

from ledger.agent_registry import DEFAULT_AGENTS_FILE, load_agents
from ledger.errors import ConfigError
from ledger.policy import load_policy


@pytest.fixture(scope="module")
def policy():
    return load_policy()


def test_shipped_agents_are_a_router_and_its_specialists(policy) -> None:
    registry = load_agents(policy)
    routers = [agent for agent in registry.all() if agent.type == "router"]
    assert [router.id for router in routers] == ["it-router"]
    specialists = registry.specialists_of("it-router")
    assert {agent.id for agent in specialists} == {
        "incident-analyst",
        "change-planner",
        "runbook-agent",
    }
    assert all(agent.type == "specialist" and agent.keywords for agent in specialists)


def test_an_agent_gets_only_the_tools_its_lane_allows(policy) -> None:
    registry = load_agents(policy)
    # The incident analyst's lane (analysis) allows http_get; change-prod would not.
    assert registry.tools_of("incident-analyst") == ["read_artifact", "http_get"]
    assert registry.lane_of("change-planner").tool_approval_above == "read_only"


def _write(tmp_path, agents: dict) -> str:
    path = tmp_path / "agents.yaml"
    path.write_text(yaml.safe_dump({"agents": agents}))
    return str(path)


def _shipped() -> dict:
    return yaml.safe_load(DEFAULT_AGENTS_FILE.read_text())["agents"]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda agents: agents["incident-analyst"].update(lane="nowhere"), "unknown lane"),
        (
            lambda agents: agents["runbook-agent"].update(allowed_providers=["acme"]),
            "unknown providers",
        ),
        (
            lambda agents: agents["it-router"].update(routes_to=["ghost"]),
            "is not a specialist",
        ),
        (
            lambda agents: agents["it-router"].update(routes_to=["it-router"]),
            "is not a specialist",
        ),
        (lambda agents: agents["it-router"].update(routes_to=[]), "a router needs routes_to"),
        (lambda agents: agents["change-planner"].update(colour="blue"), "colour"),
        (lambda agents: agents["change-planner"].update(type="boss"), "type"),
    ],
)
def test_inconsistent_agents_file_fails_with_reason(policy, tmp_path, change, reason) -> None:
    agents = _shipped()
    change(agents)
    with pytest.raises(ConfigError, match=reason):
        load_agents(policy, _write(tmp_path, agents))


def test_agents_file_is_taken_from_the_environment(policy, tmp_path, monkeypatch) -> None:
    agents = {"solo": {**_shipped()["runbook-agent"]}}
    monkeypatch.setenv("WORKBENCH_AGENTS_FILE", _write(tmp_path, agents))
    assert load_agents(policy).ids() == ["solo"]
