"""The agent runtime's part of the lanes file: each workspace's coordinator settings
(the spawn budgets and defaults its sessions get) and the named channels it declares.

A workspace is a lane: the place a task's agents run, with the lane's tools and
policy. `coordinator` at the top of the file applies to every lane (source `global`);
a lane's own `coordinator` overrides it field by field (source `workspace`); a field
neither sets has the built-in default (source `default`).
"""

from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

MessageKind = Literal[
    "status", "request", "reply", "blocker", "handoff", "result", "review_request"
]
MESSAGE_KINDS: tuple[MessageKind, ...] = get_args(MessageKind)
ConfigSource = Literal["workspace", "global", "default"]
ChannelName = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[a-z0-9][a-z0-9._-]*$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ChannelDeclaration(_Strict):
    """A named channel every session working in the lane sees."""

    name: ChannelName
    display_name: str = ""
    purpose: str = ""
    allowed_message_kinds: list[MessageKind] = Field(
        default_factory=lambda: list(MESSAGE_KINDS), min_length=1
    )


class CoordinatorSettings(_Strict):
    """What the lanes file may set; None leaves a field to the next level."""

    enabled: bool | None = None
    # The agent a spawn starts when it names none; the lane's own agent when unset.
    agent_name: str | None = Field(default=None, min_length=1, max_length=100)
    model: str | None = Field(default=None, min_length=1, max_length=200)
    provider: str | None = Field(default=None, min_length=1, max_length=100)
    max_children: int | None = Field(default=None, ge=0, le=100)
    max_depth: int | None = Field(default=None, ge=0, le=10)
    max_active_sessions_per_workspace: int | None = Field(default=None, ge=0, le=10_000)
    default_ttl_seconds: int | None = Field(default=None, ge=1, le=7 * 86_400)
    max_ttl_seconds: int | None = Field(default=None, ge=1, le=7 * 86_400)


_DEFAULTS: dict[str, Any] = {
    "enabled": True,
    "agent_name": None,  # resolved to the lane's agent
    "model": "default",
    "provider": "offline",
    "max_children": 5,
    "max_depth": 2,
    "max_active_sessions_per_workspace": 20,
    "default_ttl_seconds": 900,
    "max_ttl_seconds": 3600,
}


class Coordinator(_Strict):
    """A workspace's resolved coordinator settings, and where each value came from."""

    workspace_id: str
    enabled: bool
    agent_name: str
    model: str
    provider: str
    max_children: int
    max_depth: int
    max_active_sessions_per_workspace: int
    default_ttl_seconds: int
    max_ttl_seconds: int
    # The most specific level that set any field: `workspace`, else `global`, else
    # `default`; `sources` says it per field.
    source: ConfigSource
    sources: dict[str, ConfigSource]


def lane_agent_name(lane: str) -> str:
    """The agent that executes a plain task of the lane (`worker/executors.py`)."""
    return f"workbench-{lane}"


def resolve_coordinator(
    lane: str, workspace: CoordinatorSettings | None, global_: CoordinatorSettings
) -> Coordinator:
    values: dict[str, Any] = {}
    sources: dict[str, ConfigSource] = {}
    for field, default in _DEFAULTS.items():
        own = getattr(workspace, field) if workspace is not None else None
        shared = getattr(global_, field)
        if own is not None:
            values[field], sources[field] = own, "workspace"
        elif shared is not None:
            values[field], sources[field] = shared, "global"
        else:
            values[field], sources[field] = default, "default"
    if values["agent_name"] is None:
        values["agent_name"] = lane_agent_name(lane)
    # A default TTL above the maximum would make every defaulted spawn refused.
    values["default_ttl_seconds"] = min(values["default_ttl_seconds"], values["max_ttl_seconds"])
    levels = set(sources.values())
    source: ConfigSource = next(
        level for level in ("workspace", "global", "default") if level in levels
    )
    return Coordinator(workspace_id=lane, source=source, sources=sources, **values)
