-- name: insert_task
-- Records a new task with its verdict (status queued, awaiting_approval or denied), its
-- first run when it is queued ($14), and its first trace events, in one statement.
-- Per event: kind ($20), run ($21), status after ($22), actor ($23), message ($24),
-- data ($25). A thread run names its thread ($26), agent ($27) and options ($28).
-- Returns the new task's id and creation time, all the caller did not give it; an
-- Idempotency-Key already used inserts nothing and returns no row.
WITH task AS (
    INSERT INTO tasks (
        id, tenant_id, lane, title, instructions, source_systems, scope, mutation_level,
        model_provider, status, policy_verdict, break_glass, terminal_reason,
        current_run_id, attempt, max_attempts, created_by, idempotency_key, request_hash,
        trace_seq, thread_id, agent_type, run_options)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17,
            $18, $19, cardinality($20::text[]), $26, $27, $28)
    ON CONFLICT (tenant_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
    RETURNING id, tenant_id, lane, current_run_id, created_at
), run AS (
    INSERT INTO runs (id, task_id, tenant_id, lane, attempt, status)
    SELECT current_run_id, id, tenant_id, lane, 1, 'queued' FROM task
    WHERE current_run_id IS NOT NULL
), events AS (
    INSERT INTO trace_events (task_id, seq, tenant_id, run_id, kind, to_status, actor,
                              message, data)
    SELECT task.id, e.seq, task.tenant_id, e.run_id, e.kind, e.to_status, e.actor,
           e.message, e.data
    FROM task,
         unnest($20::text[], $21::uuid[], $22::text[], $23::text[], $24::text[],
                $25::jsonb[]) WITH ORDINALITY
         AS e(kind, run_id, to_status, actor, message, data, seq)
)
SELECT id, created_at FROM task;

-- name: find_task_by_idempotency_key
-- The task an earlier request with the same Idempotency-Key created.
SELECT * FROM tasks WHERE tenant_id = $1 AND idempotency_key = $2;

-- name: get_task
-- One task, scoped to its tenant: another tenant's task does not exist.
SELECT * FROM tasks WHERE tenant_id = $1 AND id = $2;

-- name: list_tasks
-- One page, newest first, after the keyset cursor (created_at, id) when one is given.
-- A status filter names the status's phase too, the key of the index it reads
-- (migration 0008 says why the index has phases, not statuses).
SELECT * FROM tasks
WHERE tenant_id = $1
  AND ($2::text IS NULL OR (phase = task_phase($2) AND status = $2))
  AND ($3::text IS NULL OR lane = $3)
  AND ($4::timestamptz IS NULL OR (created_at, id) < ($4, $5::uuid))
ORDER BY created_at DESC, id DESC
LIMIT $6;

-- name: move_task
-- The guarded transition: moves the task to $5 only from a status in $3, with the
-- terminal reason $4.
WITH locked AS (
    SELECT id, status FROM tasks WHERE tenant_id = $1 AND id = $2 FOR UPDATE
)
UPDATE tasks
SET status = $5, terminal_reason = $4, updated_at = now()
FROM locked
WHERE tasks.id = locked.id AND locked.status = ANY($3::text[])
RETURNING tasks.*, locked.status AS from_status;

-- name: queue_next_attempt
-- Approve or retry: from a status in $3 back to $6 (queued) with run $4 as the next
-- attempt, the approval $5 recorded when given.
WITH locked AS (
    SELECT id, status, current_run_id FROM tasks WHERE tenant_id = $1 AND id = $2 FOR UPDATE
)
UPDATE tasks
SET status = $6, attempt = tasks.attempt + 1, current_run_id = $4, terminal_reason = NULL,
    approval = coalesce($5, tasks.approval), updated_at = now()
FROM locked
WHERE tasks.id = locked.id AND locked.status = ANY($3::text[])
RETURNING tasks.*, locked.status AS from_status, locked.current_run_id AS previous_run_id;

-- name: reject_task
-- An operator's rejection of a task awaiting approval (a status in $3): it becomes $6
-- (denied), the decision $4 and the reason $5 kept on the task.
WITH locked AS (
    SELECT id, status FROM tasks WHERE tenant_id = $1 AND id = $2 FOR UPDATE
)
UPDATE tasks
SET status = $6, approval = $4, terminal_reason = $5, updated_at = now()
FROM locked
WHERE tasks.id = locked.id AND locked.status = ANY($3::text[])
RETURNING tasks.*, locked.status AS from_status;

-- name: request_rollback
-- Records the rollback/remediation request $4 on a finished task (a status in $3),
-- which becomes $5 (rollback_requested).
WITH locked AS (
    SELECT id, status FROM tasks WHERE tenant_id = $1 AND id = $2 FOR UPDATE
)
UPDATE tasks
SET status = $5, rollback = $4, updated_at = now()
FROM locked
WHERE tasks.id = locked.id AND locked.status = ANY($3::text[])
RETURNING tasks.*, locked.status AS from_status;

-- name: get_task_status
-- The current status, for the 409 that answers an illegal transition.
SELECT status FROM tasks WHERE tenant_id = $1 AND id = $2;

-- name: decide_tool_call
-- An operator's decision $4 on the pending tool call of a task in a status in $3:
-- recorded on the call, the task queued ($5) again.
WITH locked AS (
    SELECT id, status FROM tasks WHERE tenant_id = $1 AND id = $2 FOR UPDATE
)
UPDATE tasks
SET status = $5, pending_approval = tasks.pending_approval || $4::jsonb,
    updated_at = now()
FROM locked
WHERE tasks.id = locked.id AND locked.status = ANY($3::text[])
  AND tasks.pending_approval IS NOT NULL AND NOT tasks.pending_approval ? 'decision'
RETURNING tasks.*, locked.status AS from_status;
