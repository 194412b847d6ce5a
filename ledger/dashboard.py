"""The dashboard's overview of a tenant: counts, a week of daily trends, the change
requests waiting for a decision, and the latest activity from the audit feed. Every
count is bounded (capped or read from a counter), so the overview costs the same in a
tenant with millions of rows."""

from datetime import UTC, date, datetime, timedelta
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from ledger.actor import Actor
from ledger.audit_feed import FeedEntry, FeedFilters, read_feed
from ledger.overview import STATUS_COUNT_CAP, Overview
from ledger.sql import query
from ledger.states import TaskStatus

TREND_DAYS = 7
RECENT_ACTIVITY = 10
PENDING_CHANGES = 20


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DashboardCounts(_Model):
    # Per status, each capped at STATUS_COUNT_CAP.
    tasks: dict[str, int]
    approvals_waiting: int
    agents_active: int
    # Change requests waiting for a decision (capped at STATUS_COUNT_CAP).
    changes_pending: int
    # The tenant's audit chain length (its head).
    audit_records: int


class DayTrend(_Model):
    day: date
    tasks_created: int
    tasks_failed: int
    audit_records: int
    audit_warnings: int


class PendingChange(_Model):
    id: UUID
    ticket_id: UUID
    agent_id: UUID | None
    action: str
    target: str
    risk_level: str
    requested_by: str
    expires_at: datetime
    created_at: datetime


class DashboardStats(_Model):
    counts: DashboardCounts
    # The last TREND_DAYS days (UTC), oldest first, today included.
    trends: list[DayTrend]
    # The soonest to expire first, at most PENDING_CHANGES.
    pending_changes: list[PendingChange]
    recent_activity: list[FeedEntry]


class Dashboard(Overview):
    async def dashboard_stats(self, actor: Actor) -> DashboardStats:
        tenant_id = actor.tenant_id
        today = datetime.now(UTC).date()
        days = [today - timedelta(days=back) for back in range(TREND_DAYS - 1, -1, -1)]
        since = datetime.combine(days[0], datetime.min.time(), tzinfo=UTC)
        tasks = await self.status_counts(tenant_id, lane=None)
        async with self.pool.acquire() as connection:
            task_days = {
                row["day"].date(): row
                for row in await connection.fetch(
                    query("dashboard_task_trend"), tenant_id, since, TaskStatus.FAILED
                )
            }
            audit_days = {
                row["day"].date(): row
                for row in await connection.fetch(query("dashboard_audit_trend"), tenant_id, since)
            }
            head = await connection.fetchrow(query("get_audit_chain_head"), tenant_id)
            active = await connection.fetchval(
                query("dashboard_active_sessions"), tenant_id, STATUS_COUNT_CAP
            )
            pending = await connection.fetch(
                query("dashboard_pending_changes"), tenant_id, PENDING_CHANGES
            )
            changes_pending = await connection.fetchval(
                query("dashboard_pending_change_count"), tenant_id, STATUS_COUNT_CAP
            )
            recent = await read_feed(
                connection, tenant_id, FeedFilters(), limit=RECENT_ACTIVITY, role=actor.role
            )
        trends = [
            DayTrend(
                day=day,
                tasks_created=task_days[day]["tasks_created"] if day in task_days else 0,
                tasks_failed=task_days[day]["tasks_failed"] if day in task_days else 0,
                audit_records=audit_days[day]["audit_records"] if day in audit_days else 0,
                audit_warnings=audit_days[day]["audit_warnings"] if day in audit_days else 0,
            )
            for day in days
        ]
        counts = DashboardCounts(
            tasks=tasks,
            approvals_waiting=tasks.get(TaskStatus.AWAITING_APPROVAL, 0),
            agents_active=active,
            changes_pending=changes_pending,
            audit_records=head["seq"] if head else 0,
        )
        return DashboardStats(
            counts=counts,
            trends=trends,
            pending_changes=[PendingChange.model_validate(dict(row)) for row in pending],
            recent_activity=recent.entries,
        )
