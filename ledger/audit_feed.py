"""The audit feed: one newest-first timeline of a tenant's audit records (`audit`), the
trace events of its runs (`event`) and its ticket notes (`note`), with the same filters
applied to each.

Each source is one named query that pages by keyset on its own index, given at most a
page of rows; the pages are merged here. The feed's order is newest first, then by
source (audit, event, note), then within a source by its key, newest first; a cursor is
the position of the last entry shown (its time, source and key), so the next page
starts right after it whatever was appended meanwhile.

What each filter matches per source: `actor` (a note's author), `action` (an event's
or a note's kind), `category` (every event is `operations`, every note `ticket`),
`level` (an event's follows from its kind; a note is `info`), `target` (the target id:
an event's task, a note's ticket), `ticket_id` (an event's as its data names it, else
its task's ticket), `agent_id` (an event's as its data names it), `q` (Postgres
full-text search, `websearch_to_tsquery` syntax). Notes are scoped by role: a viewer
sees public notes, an operator or owner internal ones too.
"""

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from uuid import UUID

import asyncpg
from pydantic import BaseModel, ConfigDict

from ledger.audit import AuditLevel
from ledger.errors import BadRequest
from ledger.policy import Role
from ledger.sql import query

FeedSource = Literal["audit", "event", "note"]
SOURCES: tuple[FeedSource, ...] = ("audit", "event", "note")
# A cursor: the last entry's time in microseconds since the epoch, its source and key.
# Every string of this shape is a valid cursor, so the pattern says all there is to one.
_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
FEED_CURSOR_PATTERN = (
    rf"^[0-9]{{1,19}}\.(audit\.[0-9]{{1,19}}|event\.{_UUID}:[0-9]{{1,10}}|note\.{_UUID})$"
)
# The ticket notes each role reads: internal notes are for the people working tickets.
NOTE_VISIBILITIES: dict[Role, tuple[str, ...]] = {
    "viewer": ("public",),
    "worker": ("public",),
    "operator": ("internal", "public"),
    "owner": ("internal", "public"),
}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_MAX_TRACE_SEQ = 2**31 - 1
# Where a source's rows at the cursor's very time stand: all after it (the cursor is
# from a source listed earlier) or all before it (one listed later).
_ALL_AT_THE_TIME = (UUID(int=2**128 - 1), _MAX_TRACE_SEQ)
_NONE_AT_THE_TIME = (UUID(int=0), 0)


class FeedEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source: FeedSource
    # The entry's key in its source: an audit record's seq, an event's `task_id:seq`,
    # a note's id.
    key: str
    created_at: datetime
    actor: str
    action: str
    category: str
    level: AuditLevel
    target_type: str
    target_id: str
    ticket_id: str | None
    agent_id: str | None
    summary: str
    detail: dict[str, Any]


class FeedPage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    entries: list[FeedEntry]
    next_cursor: str | None


@dataclass(frozen=True)
class FeedFilters:
    actor: str | None = None
    action: str | None = None
    source: FeedSource | None = None
    category: str | None = None
    level: AuditLevel | None = None
    target: str | None = None
    q: str | None = None
    ticket_id: str | None = None
    agent_id: str | None = None

    def matched(self) -> tuple[str | None, ...]:
        """The filters in the order every source's query takes them."""
        return (
            self.actor,
            self.action,
            self.category,
            self.level,
            self.target,
            self.ticket_id,
            self.agent_id,
            self.q,
        )


@dataclass(frozen=True)
class _Position:
    created_at: datetime
    source: FeedSource
    key: str


def _cursor(entry: FeedEntry) -> str:
    return f"{(entry.created_at - _EPOCH) // _MICROSECOND}.{entry.source}.{entry.key}"


def _position(cursor: str | None) -> _Position | None:
    if cursor is None:
        return None
    if not re.fullmatch(FEED_CURSOR_PATTERN, cursor):
        raise BadRequest("cursor is not one this API returned", field="cursor")
    micros, source, key = cursor.split(".", 2)
    try:
        created_at = _EPOCH + int(micros) * _MICROSECOND
    except OverflowError:
        created_at = datetime.max.replace(tzinfo=UTC)
    return _Position(created_at, source, key)  # type: ignore[arg-type]


def _note_position(position: _Position) -> UUID:
    """Where ticket notes at the cursor's time start, as the note id to page below."""
    if position.source != "note":
        return _ALL_AT_THE_TIME[0]
    return UUID(position.key)


def _as_uuid(text: str | None) -> UUID | None:
    try:
        return UUID(text) if text is not None else None
    except ValueError:
        return None


def _event_position(position: _Position) -> tuple[UUID, int]:
    """Where trace events at the cursor's time start, as (task_id, seq) to page below."""
    if position.source != "event":
        return _ALL_AT_THE_TIME if position.source == "audit" else _NONE_AT_THE_TIME
    task, seq = position.key.split(":")
    return UUID(task), min(int(seq), _MAX_TRACE_SEQ)


async def read_feed(
    connection: asyncpg.Connection,
    tenant_id: str,
    filters: FeedFilters,
    *,
    limit: int,
    role: Role,
    cursor: str | None = None,
) -> FeedPage:
    """A page of the feed after `cursor`, as `role` may read it."""
    position = _position(cursor)
    before = position.created_at if position else None
    matched = filters.matched()
    wanted = [filters.source] if filters.source else list(SOURCES)
    rows: list[asyncpg.Record] = []
    async with connection.transaction(isolation="repeatable_read", readonly=True):
        await connection.execute(query("plan_feed_for_its_filters"))
        if "audit" in wanted:
            rows += await connection.fetch(
                query("audit_feed_records"), tenant_id, before, *matched, limit
            )
        if "event" in wanted:
            task, seq = _event_position(position) if position else (None, None)
            rows += await connection.fetch(
                query("audit_feed_events"),
                tenant_id,
                before,
                task,
                seq,
                *matched,
                limit,
                _as_uuid(filters.ticket_id),
            )
        # A note's target and ticket are uuids: a filter naming something else
        # matches no note.
        target, ticket = _as_uuid(filters.target), _as_uuid(filters.ticket_id)
        notes_can_match = (filters.target is None or target is not None) and (
            filters.ticket_id is None or ticket is not None
        )
        if "note" in wanted and notes_can_match:
            rows += await connection.fetch(
                query("audit_feed_notes"),
                tenant_id,
                before,
                _note_position(position) if position else None,
                filters.actor,
                filters.action,
                filters.category,
                filters.level,
                target,
                ticket,
                filters.agent_id,
                filters.q,
                list(NOTE_VISIBILITIES[role]),
                limit,
            )
    # Stable: rows of one source at one time keep their query's order.
    rows.sort(key=lambda row: row["created_at"], reverse=True)
    entries = [FeedEntry.model_validate(dict(row)) for row in rows[:limit]]
    # A full page may have more after it; a short one has not.
    full = len(entries) == limit
    return FeedPage(entries=entries, next_cursor=_cursor(entries[-1]) if full else None)
