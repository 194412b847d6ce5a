"""Query parameters and response bodies of the audit, dashboard and search routes."""

from pydantic import BaseModel, ConfigDict, Field

from ledger.audit import AuditLevel
from ledger.audit_feed import FEED_CURSOR_PATTERN, FeedSource

FilterText = str | None


class AuditFeedQuery(BaseModel):
    """The feed's filters, each matched exactly except `q` (full-text search)."""

    model_config = ConfigDict(extra="forbid")

    actor: FilterText = Field(default=None, min_length=1, max_length=200)
    action: FilterText = Field(default=None, min_length=1, max_length=200)
    source: FeedSource | None = None
    category: FilterText = Field(default=None, min_length=1, max_length=100)
    level: AuditLevel | None = None
    target: FilterText = Field(default=None, min_length=1, max_length=500)
    q: FilterText = Field(default=None, min_length=1, max_length=200)
    ticket_id: FilterText = Field(default=None, min_length=1, max_length=200)
    agent_id: FilterText = Field(default=None, min_length=1, max_length=200)
    limit: int = Field(default=50, ge=1, le=200)
    cursor: FilterText = Field(default=None, pattern=FEED_CURSOR_PATTERN)


class GlobalSearchQuery(BaseModel):
    """`q` in websearch syntax (words, "a phrase", or, -word); empty finds nothing."""

    model_config = ConfigDict(extra="forbid")

    q: str = Field(default="", max_length=200)
    limit: int = Field(default=60, ge=1, le=200)
