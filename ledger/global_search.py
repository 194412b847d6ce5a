"""Global search: one query over what a tenant's people and agents work with (tickets,
their notes, agents, change requests, audit records), with Postgres full-text search
(`websearch_to_tsquery`, the `simple` configuration: words as written, no stemming).

Each kind is one named query returning its best matches; the lists are merged by rank.
Only the tenant's own rows are read, and only text that was redacted when it was
stored is shown, so a result never carries a secret. Roles narrow what is searched:
`SEARCHED_BY_ROLE` says which kinds each role sees.
"""

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict

from ledger.audit_feed import NOTE_VISIBILITIES
from ledger.policy import Role
from ledger.reads import Reads
from ledger.sql import query

SearchKind = Literal["ticket", "note", "agent", "change", "audit"]
_QUERIES: dict[SearchKind, str] = {
    "ticket": "search_tickets",
    "note": "search_ticket_notes",
    "change": "search_change_requests",
    "audit": "search_audit_records",
    "agent": "search_agent_sessions",
}
_EVERYTHING: tuple[SearchKind, ...] = ("ticket", "note", "agent", "change", "audit")
# A person searches every kind, a viewer only public notes (NOTE_VISIBILITIES); a
# worker's token is for the worker protocol, not for reading the tenant's records.
SEARCHED_BY_ROLE: dict[Role, tuple[SearchKind, ...]] = {
    "viewer": _EVERYTHING,
    "operator": _EVERYTHING,
    "owner": _EVERYTHING,
    "worker": (),
}


class SearchHit(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: SearchKind
    id: str
    title: str
    # The passage that matched, the matched words between ** and **.
    snippet: str
    rank: float
    created_at: datetime
    ticket_id: str | None
    agent_id: str | None


class SearchResults(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # The query, redacted.
    q: str
    # The kinds searched for the caller's role.
    searched: list[SearchKind]
    results: list[SearchHit]


class GlobalSearch(Reads):
    async def search_global(
        self, tenant_id: str, role: Role, text: str, *, limit: int
    ) -> SearchResults:
        searched = list(SEARCHED_BY_ROLE[role])
        hits: list[SearchHit] = []
        async with self.pool.acquire() as connection:
            for kind in searched:
                scope = (list(NOTE_VISIBILITIES[role]),) if kind == "note" else ()
                rows = await connection.fetch(query(_QUERIES[kind]), tenant_id, text, limit, *scope)
                hits += [SearchHit.model_validate(dict(row)) for row in rows]
        hits.sort(key=lambda hit: (hit.rank, hit.created_at), reverse=True)
        # The query as given is echoed redacted: one may paste a secret into a search box.
        return SearchResults(q=self.redactor.text(text), searched=searched, results=hits[:limit])
