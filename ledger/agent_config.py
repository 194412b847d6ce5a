"""A tenant's agent runtime settings, and the governed tasks made from them.

The settings are what an operator edits on the settings page: named profiles (the
lane, provider, model, instructions and timeout an agent runs with), which profile each
ticket class is routed to, the profile used when none is named, the limits and the
defaults. They hold no secret: a setting the redactor would have to change before
storing it is refused, naming the field (`SecretRefused`, 400), so what is stored,
returned and audited is exactly what was sent.

An agent is started by creating a task through the policy like any other
(`TaskCreation`): its verdict decides whether it is queued for a worker, waits for an
approval, or is recorded as denied. Nothing runs here.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

import asyncpg
from pydantic import BaseModel, ConfigDict, Field, StrictBool

from ledger.actor import Actor
from ledger.audit import record_audit
from ledger.creation import CreatedTask, TaskCreation
from ledger.errors import BadRequest, Conflict, NotFound
from ledger.models import LaneName, LevelName, ProviderName, TaskCreateRequest
from ledger.redaction import Redactor
from ledger.sql import query
from ledger.states import TERMINAL, TaskStatus
from ledger.ticket_models import Ticket, TicketCreateRequest
from ledger.ticket_workflow import TicketClass
from ledger.tickets import Tickets

# The profile an agent gets when the settings name none for it: the defaults alone.
DEFAULT_PROFILE = "default"
# The task's scope key that says which profile it was made from, with what it resolved.
PROFILE_SCOPE_KEY = "agent_profile"

ProfileName = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[a-z0-9][a-z0-9._-]*$")]
ModelName = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][\w.:/@-]*$")]
Minutes = Annotated[int, Field(ge=1, le=1440)]


def _names_as_property_names(schema: dict[str, Any]) -> None:
    """pydantic describes a dict with patterned keys by `patternProperties`, which lets
    any other key through; the keys' pattern belongs in `propertyNames`."""
    [(pattern, values)] = schema.pop("patternProperties").items()
    schema["propertyNames"] = {**schema.get("propertyNames", {}), "pattern": pattern}
    schema["additionalProperties"] = values


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AgentProfile(_Strict):
    """How an agent made from this profile runs; a field left out takes the settings'
    default."""

    description: Annotated[str, Field(max_length=500)] = ""
    lane: LaneName = "analysis"
    model_provider: ProviderName | None = None
    model: ModelName | None = None
    # Put before the prompt of every task made from the profile.
    instructions: Annotated[str, Field(max_length=20_000)] = ""
    mutation_level: LevelName = "read_only"
    # A run stops at the shorter of this and its lane's timeout_seconds.
    timeout_minutes: Minutes | None = None
    # A ticket created with `auto_assign` whose class is routed to this profile gets an
    # agent at once; other routes stay manual.
    auto_assign: StrictBool = False


class AgentRuntimeConfig(_Strict):
    """A tenant's agent runtime settings, replaced as a whole by each PUT."""

    # The profile used when a request names none and its ticket class is not routed.
    active_profile: ProfileName | None = None
    profiles: dict[ProfileName, AgentProfile] = Field(
        default_factory=dict, max_length=100, json_schema_extra=_names_as_property_names
    )
    # Ticket class -> the profile its agents get.
    route_assignments: dict[TicketClass, ProfileName] = Field(default_factory=dict)
    max_concurrent_agents: int = Field(default=5, ge=1, le=1000)
    default_timeout_minutes: Minutes = 30
    default_model_provider: ProviderName = "offline"
    # None: the provider's own default model.
    default_model: ModelName | None = None


class StoredAgentConfig(_Strict):
    config: AgentRuntimeConfig
    # None for both while the tenant has only the built-in defaults.
    updated_by: str | None = None
    updated_at: datetime | None = None


class ResolvedProfile(_Strict):
    """A profile with every default filled in: what a task is made with."""

    name: str
    lane: str
    model_provider: str
    model: str | None
    instructions: str
    mutation_level: str
    timeout_minutes: int

    def scope(self) -> dict[str, Any]:
        """What a task made from the profile carries under `PROFILE_SCOPE_KEY`: it counts
        against max_concurrent_agents, and the worker applies its timeout."""
        return {"name": self.name, "model": self.model, "timeout_minutes": self.timeout_minutes}


class SecretRefused(BadRequest):
    code = "secret_refused"


class AgentLimitReached(Conflict):
    code = "agent_limit_reached"


# A task in one of these counts against max_concurrent_agents.
_LIVE = [str(status) for status in TaskStatus if status not in TERMINAL]


def first_secret_field(
    redactor: Redactor, value: dict[str, Any] | list[Any], path: tuple[str, ...] = ()
) -> str | None:
    """The dotted path of the first field the redactor would change (a secret-bearing
    name with a value, or a value that holds a secret's form), or None. The key of an
    object or a list is a label (a profile named `reset-password`), not a secret's name:
    what is under it is looked at instead."""
    items = value.items() if isinstance(value, dict) else enumerate(value)
    for key, item in items:
        where = (*path, str(key))
        if isinstance(item, dict | list):
            found = first_secret_field(redactor, item, where)
            if found is not None:
                return found
            continue
        single = {key: item} if isinstance(value, dict) else [item]
        if redactor.value(single) != single:
            return ".".join(where)
    return None


def resolve_profile(
    config: AgentRuntimeConfig, name: str | None = None, ticket_class: str | None = None
) -> ResolvedProfile:
    """The profile `name`, else the one `ticket_class` is routed to, else the active
    profile, else the defaults alone (`default`). A named profile the settings do not
    define is not found."""
    if name is not None and name not in config.profiles:
        raise NotFound(
            f"the agent settings define no profile {name!r}",
            profile=name,
            known=sorted(config.profiles),
        )
    chosen = name or config.route_assignments.get(ticket_class or "") or config.active_profile
    # Stored settings only name profiles they define (`_check_references`).
    profile = config.profiles[chosen] if chosen else AgentProfile()
    return ResolvedProfile(
        name=chosen or DEFAULT_PROFILE,
        lane=profile.lane,
        model_provider=profile.model_provider or config.default_model_provider,
        # The default model is the default provider's: a profile with a provider of its
        # own runs that provider's default model unless it names one.
        model=profile.model or (None if profile.model_provider else config.default_model),
        instructions=profile.instructions,
        mutation_level=profile.mutation_level,
        timeout_minutes=profile.timeout_minutes or config.default_timeout_minutes,
    )


@dataclass(frozen=True)
class AgentTask:
    created: CreatedTask
    profile: ResolvedProfile
    ticket_id: UUID | None


class AgentConfigs(Tickets, TaskCreation):
    async def agent_config(self, tenant_id: str) -> StoredAgentConfig:
        row = await self.pool.fetchrow(query("get_agent_settings"), tenant_id)
        return _stored(row) if row else StoredAgentConfig(config=AgentRuntimeConfig())

    async def put_agent_config(self, actor: Actor, config: AgentRuntimeConfig) -> StoredAgentConfig:
        """Replace the tenant's settings, with an audit record naming what changed."""
        sent = config.model_dump(mode="json")
        secret = first_secret_field(self.redactor, sent)
        if secret is not None:
            # Only the field's name: the value is what must not be written anywhere.
            raise SecretRefused(
                f"{secret} looks like a secret; provider keys and tokens are configured "
                "in the deployment's environment, never in the agent settings",
                field=secret,
            )
        self._check_profiles(config)
        _check_references(config)
        async with self.pool.acquire() as connection, connection.transaction():
            before = await connection.fetchval(
                query("lock_agent_settings"), actor.tenant_id, actor.subject
            )
            row = await connection.fetchrow(
                query("store_agent_settings"), actor.tenant_id, sent, actor.subject
            )
            await record_audit(
                connection,
                tenant_id=actor.tenant_id,
                actor=actor.subject,
                action="agent_config_updated",
                target_type="agent_config",
                target_id=actor.tenant_id,
                category="config",
                detail={
                    "changed": _changed_fields(AgentRuntimeConfig.model_validate(before), config),
                    "profiles": sorted(config.profiles),
                },
                redactor=self.redactor,
            )
        return _stored(row)

    def _check_profiles(self, config: AgentRuntimeConfig) -> None:
        """Every lane, provider and mutation level named is one the lanes file has."""
        named = [("default_model_provider", config.default_model_provider, "providers")]
        for name, profile in config.profiles.items():
            named += [
                (f"profiles.{name}.lane", profile.lane, "lanes"),
                (f"profiles.{name}.mutation_level", profile.mutation_level, "mutation_levels"),
            ]
            if profile.model_provider is not None:
                named.append(
                    (f"profiles.{name}.model_provider", profile.model_provider, "providers")
                )
        for field, value, part in named:
            known = getattr(self.policy, part)
            if value not in known:
                raise BadRequest(f"unknown {field} {value!r}", field=field, allowed=sorted(known))

    async def resolve_agent_profile(
        self, tenant_id: str, name: str | None = None, ticket_class: str | None = None
    ) -> ResolvedProfile:
        """The tenant's profile for an agent (see `resolve_profile`)."""
        return resolve_profile((await self.agent_config(tenant_id)).config, name, ticket_class)

    async def create_agent_task(
        self,
        actor: Actor,
        profile: ResolvedProfile,
        prompt: str,
        *,
        title: str | None = None,
        ticket: Ticket | None = None,
        scope: dict[str, Any] | None = None,
    ) -> AgentTask:
        """A governed task for an agent with `profile` working on `prompt` (for `ticket`
        when given, which the task is then linked to), with `scope` for the policy.
        Refused (`AgentLimitReached`, 409) when the tenant's live agent tasks would pass
        its max_concurrent_agents; a denied task is finished, and counts for nothing."""
        instructions = f"{profile.instructions}\n\n{prompt}" if profile.instructions else prompt
        request = TaskCreateRequest(
            lane=profile.lane,
            title=title or _title_of(prompt),
            instructions=instructions,
            scope={**(scope or {}), PROFILE_SCOPE_KEY: profile.scope()},
            mutation_level=profile.mutation_level,
            model_provider=profile.model_provider,
        )

        async def within_limit(connection: asyncpg.Connection, task_id: UUID, _: str) -> None:
            await hold_agent_limit(connection, actor.tenant_id)
            if ticket is not None:
                await self.link_ticket_task(connection, actor.tenant_id, ticket.id, task_id)

        created = await self.create_task(
            actor,
            request,
            lineage={"ticket_id": str(ticket.id)} if ticket else None,
            with_task=within_limit,
        )
        return AgentTask(created, profile, ticket.id if ticket else None)

    async def agent_task_from_prompt(
        self,
        actor: Actor,
        prompt: str,
        *,
        title: str | None,
        ticket_class: TicketClass,
        priority: int,
    ) -> AgentTask:
        """A local ticket for `prompt` and an agent's task for it, with the profile its
        ticket class is routed to (else the active one, else the defaults)."""
        config = (await self.agent_config(actor.tenant_id)).config
        profile = resolve_profile(config, ticket_class=ticket_class)
        # What would refuse the task is checked before the ticket is made for it (the
        # limit again with the task, under its lock).
        self._check_known(profile.lane, profile.mutation_level, profile.model_provider)
        async with self.pool.acquire() as connection:
            live = await _live_agents(connection, actor.tenant_id)
        if live >= config.max_concurrent_agents:
            raise _limit_reached(live, config.max_concurrent_agents)
        ticket = await self.create_ticket(
            actor,
            TicketCreateRequest(
                title=title or _title_of(prompt),
                description=prompt,
                ticket_class=ticket_class,
                priority=priority,
            ),
        )
        return await self.create_agent_task(actor, profile, prompt, title=title, ticket=ticket)


async def hold_agent_limit(connection: asyncpg.Connection, tenant_id: str) -> None:
    """In the transaction that creates an agent's task, after its insert: refused
    (`AgentLimitReached`) when the tenant's live agent tasks, this one included, pass its
    max_concurrent_agents. Counted under a lock, so concurrent starts cannot overshoot."""
    await connection.execute(query("lock_agent_starts"), tenant_id)
    row = await connection.fetchrow(query("get_agent_settings"), tenant_id)
    limit = (_stored(row).config if row else AgentRuntimeConfig()).max_concurrent_agents
    live = await _live_agents(connection, tenant_id)
    if live > limit:
        raise _limit_reached(live - 1, limit)


async def _live_agents(connection: asyncpg.Connection, tenant_id: str) -> int:
    count: int = await connection.fetchval(
        query("count_live_agent_tasks"), tenant_id, _LIVE, PROFILE_SCOPE_KEY
    )
    return count


def _limit_reached(live: int, limit: int) -> AgentLimitReached:
    return AgentLimitReached(
        f"the tenant has {live} live agents and its max_concurrent_agents is {limit}: "
        "wait for one to finish, or stop one",
        live_agents=live,
        max_concurrent_agents=limit,
    )


def _check_references(config: AgentRuntimeConfig) -> None:
    named = {
        "active_profile": config.active_profile,
        **{f"route_assignments.{route}": name for route, name in config.route_assignments.items()},
    }
    missing = {field: name for field, name in named.items() if name and name not in config.profiles}
    if missing:
        field, name = next(iter(missing.items()))
        raise Conflict(
            f"{field} names the profile {name!r}, which the settings do not define",
            field=field,
            missing=sorted(set(missing.values())),
            known=sorted(config.profiles),
        )


def _changed_fields(before: AgentRuntimeConfig, after: AgentRuntimeConfig) -> list[str]:
    return [
        field
        for field in AgentRuntimeConfig.model_fields
        if getattr(before, field) != getattr(after, field)
    ]


def _stored(row: asyncpg.Record) -> StoredAgentConfig:
    return StoredAgentConfig(
        config=AgentRuntimeConfig.model_validate(row["settings"]),
        updated_by=row["updated_by"],
        updated_at=row["updated_at"],
    )


def _title_of(prompt: str) -> str:
    first_line = prompt.strip().splitlines()[0] if prompt.strip() else "Agent task"
    return first_line[:120]
