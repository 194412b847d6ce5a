-- name: search_tasks
-- The task list with a text filter: tasks whose title holds $7 (a LIKE pattern, its
-- wildcards escaped by the caller), otherwise as list_tasks: newest first, after the
-- keyset cursor ($4, $5) when given, at most $6. Walks the tenant's page index and
-- keeps the matches, so a rare text reads far into a large tenant: it is an
-- operator's search, bounded by its LIMIT, not a hot path.
SELECT * FROM tasks
WHERE tenant_id = $1
  AND ($2::text IS NULL OR (phase = task_phase($2) AND status = $2))
  AND ($3::text IS NULL OR lane = $3)
  AND ($4::timestamptz IS NULL OR (created_at, id) < ($4, $5::uuid))
  AND title ILIKE $7 ESCAPE '\'
ORDER BY created_at DESC, id DESC
LIMIT $6;

-- name: task_status_counts
-- Tenant $1's tasks per status in $2 (optionally in lane $3), each count capped at $4:
-- a count stops reading at the cap, so a tenant with millions of tasks costs at most
-- $4 index entries per status.
SELECT s.status, c.n
FROM unnest($2::text[]) AS s(status)
CROSS JOIN LATERAL (
    SELECT count(*) AS n FROM (
        SELECT 1 FROM tasks
        WHERE tenant_id = $1 AND phase = task_phase(s.status) AND status = s.status
          AND ($3::text IS NULL OR lane = $3)
        LIMIT $4
    ) AS capped
) AS c;

-- name: task_runs
-- Every run (attempt) of task $2 in tenant $1, first attempt first.
SELECT * FROM runs WHERE tenant_id = $1 AND task_id = $2 ORDER BY attempt;

-- name: tenant_tasks_among
-- Which of the task ids $2 are tenant $1's: the live console's filter over the trace
-- notifications, which name tasks of every tenant.
SELECT id FROM tasks WHERE tenant_id = $1 AND id = ANY($2::uuid[]);

-- name: tasks_awaiting_approval
-- Tenant $1's tasks waiting for a decision (the policy's, or a paused tool call's),
-- the longest waiting first, at most $2.
SELECT * FROM tasks
WHERE phase = 'awaiting_approval' AND tenant_id = $1
ORDER BY updated_at, id
LIMIT $2;

-- name: pending_approval_requests
-- Tenant $1's tool calls waiting for a decision, oldest first, at most $2.
SELECT * FROM approval_requests
WHERE tenant_id = $1 AND status = 'pending'
ORDER BY created_at, id
LIMIT $2;

-- name: tenant_lane_backlog
-- Tenant $1's unfinished runs per lane and status (queued, dispatched, running,
-- paused): how many are due, how many wait for a later time (a retry's backoff), and
-- how long the oldest due one has waited.
SELECT lane, status,
       count(*) FILTER (WHERE available_at <= now()) AS due,
       count(*) FILTER (WHERE available_at > now()) AS later,
       extract(epoch FROM now() - min(available_at) FILTER (WHERE available_at <= now()))
           ::float8 AS oldest_due_seconds
FROM runs
WHERE tenant_id = $1 AND status IN ('queued', 'dispatched', 'running', 'paused')
GROUP BY lane, status;

-- name: tenant_workers
-- The workers holding tenant $1's running runs: how many each holds per lane, its
-- latest heartbeat and the soonest lease to expire.
SELECT claimed_by AS worker, lane, count(*) AS in_flight,
       max(heartbeat_at) AS last_heartbeat, min(lease_until) AS next_lease_expiry
FROM runs
WHERE status = 'running' AND tenant_id = $1
GROUP BY claimed_by, lane
ORDER BY claimed_by, lane;

-- name: tenant_dead_letters
-- Tenant $1's dead-lettered lane messages (their task is the tenant's), newest first,
-- at most $2. The message body is a hint naming its task; one that names none is
-- nobody's and is left out.
SELECT d.id, d.lane, d.message_id, d.delivery_count, d.reason, d.description,
       d.enqueued_at, d.dead_lettered_at, t.id AS task_id, t.title
FROM lane_dead_letters AS d
JOIN tasks AS t
  ON t.id = CASE WHEN d.body->>'task_id' ~ '^[0-9a-fA-F-]{36}$'
                 THEN (d.body->>'task_id')::uuid END
WHERE t.tenant_id = $1
ORDER BY d.dead_lettered_at DESC, d.id DESC
LIMIT $2;
