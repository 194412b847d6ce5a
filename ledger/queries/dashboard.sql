-- name: dashboard_task_trend
-- Tenant $1's tasks created per day since $2 (a day's start), and how many are in status $3 (failed).
SELECT date_trunc('day', created_at, 'UTC') AS day,
       count(*) AS tasks_created,
       count(*) FILTER (WHERE status = $3) AS tasks_failed
FROM tasks
WHERE tenant_id = $1 AND created_at >= $2
GROUP BY 1;

-- name: dashboard_audit_trend
-- Tenant $1's audit records per day since $2, and how many were warnings or worse.
SELECT date_trunc('day', created_at, 'UTC') AS day,
       count(*) AS audit_records,
       count(*) FILTER (WHERE level <> 'info') AS audit_warnings
FROM audit_records
WHERE tenant_id = $1 AND created_at >= $2
GROUP BY 1;

-- name: dashboard_active_sessions
-- How many of tenant $1's agent sessions are bound to a claim now, stopping at $2.
SELECT count(*) FROM (
    SELECT 1 FROM agent_sessions s JOIN runs r ON r.id = s.run_id
    WHERE s.tenant_id = $1 AND s.state = 'active' AND r.status = 'running'
    LIMIT $2
) AS capped;

-- name: dashboard_pending_changes
-- Tenant $1's change requests waiting for a decision and not yet expired, the soonest to
-- expire first, at most $2.
SELECT id, ticket_id, agent_id, action, target, risk_level, requested_by, expires_at,
       created_at
FROM change_requests
WHERE tenant_id = $1 AND status = 'pending' AND expires_at > now()
ORDER BY expires_at
LIMIT $2;

-- name: dashboard_pending_change_count
-- How many of tenant $1's change requests wait for a decision, stopping at $2.
SELECT count(*) FROM (
    SELECT 1 FROM change_requests
    WHERE tenant_id = $1 AND status = 'pending' AND expires_at > now()
    LIMIT $2
) AS capped;
