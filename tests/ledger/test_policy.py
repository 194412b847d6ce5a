"""The verdict for each default lane, and a lanes file that does not hold together."""

import pytest

from ledger.errors import ConfigError
from ledger.policy import load_policy


@pytest.fixture(scope="module")
def policy():
    return load_policy()


def _verdict(policy, **overrides):
    request = {
        "lane_name": "analysis",
        "mutation_level": "read_only",
        "source_systems": [],
        "scope": {},
        "model_provider": "offline",
        "role": "operator",
    }
    return policy.evaluate(**{**request, **overrides})


@pytest.mark.parametrize(
    ("lane", "level", "scope", "decision"),
    [
        ("analysis", "read_only", {}, "allow"),
        ("analysis", "propose", {}, "allow"),
        ("analysis", "write_nonprod", {}, "deny"),
        ("change-nonprod", "write_nonprod", {}, "allow"),
        ("change-nonprod", "write_prod", {}, "deny"),
        ("change-prod", "write_prod", {"rollback": "revert"}, "require_approval"),
        ("change-prod", "write_prod", {}, "deny"),
        ("change-prod", "write_prod", {"rollback": ""}, "deny"),
    ],
)
def test_default_lanes(policy, lane, level, scope, decision) -> None:
    assert _verdict(policy, lane_name=lane, mutation_level=level, scope=scope).decision == decision


def test_verdict_records_profile_and_version(policy) -> None:
    verdict = _verdict(
        policy, lane_name="change-prod", mutation_level="write_prod", scope={"rollback": "x"}
    )
    assert verdict.profile == "production"
    assert verdict.policy_version == policy.policy_version
    assert verdict.reasons == ["lane change-prod requires operator approval"]


def test_role_not_allowed_to_submit_is_denied(policy) -> None:
    verdict = _verdict(policy, role="viewer")
    assert verdict.decision == "deny"
    assert verdict.reasons == ["role viewer may not submit to lane analysis"]


def test_inconsistent_lanes_file_fails_with_reason(tmp_path) -> None:
    text = load_policy().model_dump_json()
    broken = tmp_path / "lanes.yaml"
    broken.write_text(text.replace('"profile":"standard"', '"profile":"missing"', 1))
    with pytest.raises(ConfigError, match="unknown profile 'missing'"):
        load_policy(broken)
    typo = tmp_path / "typo.yaml"
    typo.write_text(text.replace('"max_attempts"', '"max_attempt"', 1))
    with pytest.raises(ConfigError, match="max_attempt"):
        load_policy(typo)


def test_env_selects_lanes_file(tmp_path, monkeypatch) -> None:
    custom = tmp_path / "lanes.yaml"
    custom.write_text(load_policy().model_dump_json().replace("2026-11-24.1", "custom-7"))
    monkeypatch.setenv("WORKBENCH_LANES_FILE", str(custom))
    assert load_policy().policy_version == "custom-7"
