"""The workspace's coordinator settings: the lane's own over the file's top level over
the built-in defaults, field by field, each with where it came from."""

from ledger.runtime_config import CoordinatorSettings, resolve_coordinator


def test_each_field_comes_from_the_most_specific_level_that_sets_it() -> None:
    lane = CoordinatorSettings(max_children=2, agent_name="lead")
    shared = CoordinatorSettings(max_children=9, max_depth=3, default_ttl_seconds=60)
    resolved = resolve_coordinator("analysis", lane, shared)
    assert (resolved.max_children, resolved.agent_name) == (2, "lead")
    assert (resolved.max_depth, resolved.default_ttl_seconds) == (3, 60)
    assert resolved.provider == "offline"
    assert resolved.sources["max_children"] == "workspace"
    assert resolved.sources["max_depth"] == "global"
    assert resolved.sources["provider"] == "default"
    assert resolved.source == "workspace"


def test_defaults_only() -> None:
    resolved = resolve_coordinator("change-prod", None, CoordinatorSettings())
    assert resolved.source == "default" and resolved.agent_name == "workbench-change-prod"
    # A default TTL above the maximum would refuse every defaulted spawn.
    capped = resolve_coordinator(
        "x",
        CoordinatorSettings(default_ttl_seconds=500, max_ttl_seconds=100),
        CoordinatorSettings(),
    )
    assert capped.default_ttl_seconds == 100
