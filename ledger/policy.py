"""Lanes, policy profiles and the verdict every task gets at creation.

The configuration is a YAML file (`WORKBENCH_LANES_FILE`, else the `lanes.yaml` shipped
beside this module). A verdict is a pure function of the lane, the requested mutation
level, source systems, scope, model provider and the caller's role, so the same request
under the same `policy_version` always gets the same answer.
"""

import os
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ledger.errors import ConfigError
from ledger.runtime_config import (
    ChannelDeclaration,
    Coordinator,
    CoordinatorSettings,
    resolve_coordinator,
)

Decision = Literal["allow", "require_approval", "deny"]
Role = Literal["viewer", "operator", "owner", "worker"]

DEFAULT_LANES_FILE = Path(__file__).with_name("lanes.yaml")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Described(_Strict):
    description: str = ""


class Profile(_Strict):
    description: str = ""
    allowed_providers: list[str]
    submit_roles: list[Role] = ["operator", "owner"]


class Transport(_Strict):
    """How runs of a lane reach workers. A lane without one is `not_configured`."""

    kind: Literal["postgres", "servicebus"]
    # Service Bus queue name; the lane name when unset.
    queue: str | None = None
    # How long a received message stays invisible before it is delivered again
    # (Service Bus: the queue's setting).
    lock_seconds: float = Field(default=30.0, gt=0, le=300)
    # Deliveries before a message is dead-lettered (Service Bus: the queue's setting).
    max_delivery_count: int = Field(default=10, ge=1, le=2000)


class Lane(_Strict):
    description: str = ""
    profile: str
    max_mutation_level: str
    decision: Literal["allow", "require_approval"]
    requires_rollback_plan: bool = False
    source_systems: list[str]
    max_attempts: int = Field(default=3, ge=1, le=100)
    transport: Transport | None = None
    # A worker must heartbeat within this many seconds or the reaper retries the run.
    lease_seconds: float = Field(default=30.0, ge=1, le=3600)
    # A dispatched run not claimed within this long is sent again.
    dispatch_timeout_seconds: float = Field(default=120.0, ge=1, le=86400)
    # Retry backoff: base * 2^(attempt-1) seconds, capped, with jitter.
    retry_backoff_seconds: float = Field(default=2.0, ge=0, le=3600)
    retry_backoff_max_seconds: float = Field(default=300.0, ge=0, le=86400)
    # Agent runs: the built-in tools the lane allows, hosts its http_get may reach,
    # and tool calls above this mutation level pause for an operator's approval
    # (None: no tool call needs approval).
    tools: list[str] = Field(default_factory=list)
    allowed_hosts: list[str] = Field(default_factory=list)
    tool_approval_above: str | None = None
    timeout_seconds: float = Field(default=300.0, gt=0, le=86400)
    max_turns: int = Field(default=10, ge=1, le=200)
    # Tokens (input + output) one run may spend; the run fails as budget_exceeded past it.
    token_budget: int | None = Field(default=None, ge=1)
    # The agent runtime (`ledger/runtime_config.py`): named channels every session of
    # the lane sees, and the lane's own coordinator settings.
    channels: list[ChannelDeclaration] = Field(default_factory=list, max_length=50)
    coordinator: CoordinatorSettings | None = None


RiskLevel = Literal["low", "medium", "high", "critical"]
RISK_LEVELS: tuple[RiskLevel, ...] = ("low", "medium", "high", "critical")


class ChangeApprovalRule(_Strict):
    """Who may approve a change request of one risk level, and how many must."""

    approver_roles: list[Role] = Field(min_length=1)
    # Distinct approvers needed (a change advisory board's quorum); the requester is
    # never one of them.
    approvals_required: int = Field(default=1, ge=1, le=10)


class ChangeApproval(_Strict):
    """The change gates' rule (`ledger/changes.py`): one entry per risk level, and how
    long a change waits for its decision before it expires."""

    risk_levels: dict[RiskLevel, ChangeApprovalRule] = {
        "low": ChangeApprovalRule(approver_roles=["operator", "owner"]),
        "medium": ChangeApprovalRule(approver_roles=["operator", "owner"]),
        "high": ChangeApprovalRule(approver_roles=["owner"]),
        "critical": ChangeApprovalRule(approver_roles=["owner"], approvals_required=2),
    }
    default_expiry_seconds: int = Field(default=3600, ge=1, le=30 * 86_400)
    max_expiry_seconds: int = Field(default=7 * 86_400, ge=1, le=30 * 86_400)

    @model_validator(mode="after")
    def _every_level_has_a_rule(self) -> "ChangeApproval":
        missing = [level for level in RISK_LEVELS if level not in self.risk_levels]
        if missing:
            raise ValueError(f"change_approval: no rule for risk levels {missing}")
        if self.default_expiry_seconds > self.max_expiry_seconds:
            raise ValueError("change_approval: default_expiry_seconds exceeds the maximum")
        return self


class PolicyConfig(_Strict):
    policy_version: str
    secret_keys: list[str]
    mutation_levels: list[str]
    providers: dict[str, Described]
    sources: dict[str, Described]
    profiles: dict[str, Profile]
    lanes: dict[str, Lane]
    coordinator: CoordinatorSettings = CoordinatorSettings()
    change_approval: ChangeApproval = ChangeApproval()

    @model_validator(mode="after")
    def _references_resolve(self) -> "PolicyConfig":
        for name, lane in self.lanes.items():
            if lane.profile not in self.profiles:
                raise ValueError(f"lane {name}: unknown profile {lane.profile!r}")
            for level in (lane.max_mutation_level, lane.tool_approval_above):
                if level is not None and level not in self.mutation_levels:
                    raise ValueError(f"lane {name}: unknown mutation level {level!r}")
            unknown = set(lane.source_systems) - set(self.sources)
            if unknown:
                raise ValueError(f"lane {name}: unknown source systems {sorted(unknown)}")
            declared = [channel.name for channel in lane.channels]
            if len(set(declared)) != len(declared):
                raise ValueError(f"lane {name}: a channel is declared twice")
        for name, profile in self.profiles.items():
            unknown = set(profile.allowed_providers) - set(self.providers)
            if unknown:
                raise ValueError(f"profile {name}: unknown providers {sorted(unknown)}")
        return self

    @cached_property
    def _level_rank(self) -> dict[str, int]:
        return {level: rank for rank, level in enumerate(self.mutation_levels)}

    def coordinator_for(self, lane: str) -> Coordinator:
        """The lane's coordinator settings, resolved (see `ledger/runtime_config.py`)."""
        return self._coordinators[lane]

    @cached_property
    def _coordinators(self) -> dict[str, Coordinator]:
        return {
            name: resolve_coordinator(name, lane.coordinator, self.coordinator)
            for name, lane in self.lanes.items()
        }

    def exceeds(self, level: str, ceiling: str) -> bool:
        """True when mutation level `level` is above `ceiling`."""
        return self._level_rank[level] > self._level_rank[ceiling]

    def evaluate(
        self,
        *,
        lane_name: str,
        mutation_level: str,
        source_systems: list[str],
        scope: dict[str, Any],
        model_provider: str,
        role: Role,
    ) -> "Verdict":
        """The verdict for one request. The caller has checked that the lane, level and
        provider exist; everything else that is wrong is a `deny` with one reason each."""
        lane = self.lanes[lane_name]
        profile = self.profiles[lane.profile]
        denials: list[str] = []
        if self.exceeds(mutation_level, lane.max_mutation_level):
            denials.append(
                f"mutation level {mutation_level} exceeds lane {lane_name} ceiling "
                f"{lane.max_mutation_level}"
            )
        if model_provider not in profile.allowed_providers:
            denials.append(
                f"model provider {model_provider} is not allowed by profile {lane.profile}"
            )
        denials.extend(
            f"source system {source} is not allowed in lane {lane_name}"
            for source in source_systems
            if source not in lane.source_systems
        )
        if lane.requires_rollback_plan and not scope.get("rollback"):
            denials.append(f"lane {lane_name} requires a rollback plan in scope.rollback")
        if role not in profile.submit_roles:
            denials.append(f"role {role} may not submit to lane {lane_name}")

        if denials:
            return Verdict(
                decision="deny",
                reasons=denials,
                profile=lane.profile,
                policy_version=self.policy_version,
            )
        reason = (
            f"lane {lane_name} allows {mutation_level} without approval"
            if lane.decision == "allow"
            else f"lane {lane_name} requires operator approval"
        )
        return Verdict(
            decision=lane.decision,
            reasons=[reason],
            profile=lane.profile,
            policy_version=self.policy_version,
        )


class Verdict(_Strict):
    decision: Decision
    reasons: list[str]
    profile: str
    policy_version: str


def load_policy(path: str | os.PathLike[str] | None = None) -> PolicyConfig:
    """Read and validate the lanes file; a bad file fails start-up with the reason."""
    source = Path(path or os.environ.get("WORKBENCH_LANES_FILE") or DEFAULT_LANES_FILE)
    try:
        raw = yaml.safe_load(source.read_text())
        return PolicyConfig.model_validate(raw)
    except (OSError, yaml.YAMLError, ValidationError) as error:
        raise ConfigError(f"cannot load lanes file {source}: {error}") from error
