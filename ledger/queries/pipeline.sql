-- Lock order, everywhere: a transaction that changes a task and its run locks the task
-- row first. The claim, finish and reaper queries below all do, as do the outbox's in
-- outbox.sql and the operator transitions in tasks.sql, so two of them can wait on each other but never
-- deadlock. Heartbeats touch only the run row and hold no task lock.

-- name: lock_tasks_for_runs
-- Locks the tasks whose current runs are $1 while they are in one of the statuses $2,
-- in id order, so two batches that share a task wait for each other, never deadlock.
SELECT * FROM tasks
WHERE current_run_id = ANY($1::uuid[]) AND status = ANY($2::text[])
ORDER BY id
FOR UPDATE;

-- name: claim_runs
-- Workers' claims, a batch in one statement: each run ($1) only at the attempt its hint
-- names ($2), only for the task it names ($3), and only while both wait. The tasks are
-- locked first, in id order (so two batches that share a task wait for each other,
-- never deadlock); then the runs are claimed with their token hashes ($4) by worker
-- $5 for their lane's lease ($8 lanes, $9 lease seconds), the tasks moved to running,
-- and one `worker_receipt` event each: actor $5, message per run $6, data {via: $7,
-- lease_seconds}. The claim's statuses: tasks from $10 to $12, runs from $11 to $13.
-- Returns each moved task, its status before (task_was) and its run as JSON
-- (claimed_run).
WITH hinted AS (
    SELECT * FROM unnest($1::uuid[], $2::int[], $3::uuid[], $4::text[], $6::text[])
        AS h(run_id, attempt, task_id, token_hash, message)
), locked AS (
    SELECT t.id, t.status, t.lane FROM tasks t
    WHERE t.current_run_id = ANY($1::uuid[]) AND t.status = ANY($10::text[])
    ORDER BY t.id
    FOR UPDATE
), claimed AS (
    UPDATE runs r
    SET status = $13, claimed_by = $5, claim_token_hash = h.token_hash,
        lease_until = now() + make_interval(secs => l.lease_seconds), heartbeat_at = now(),
        started_at = coalesce(r.started_at, now())
    FROM hinted h
    JOIN locked ON locked.id = h.task_id
    JOIN unnest($8::text[], $9::float8[]) AS l(lane, lease_seconds) ON l.lane = locked.lane
    WHERE r.id = h.run_id AND r.task_id = h.task_id AND r.attempt = h.attempt
      AND r.status = ANY($11::text[])
    RETURNING r.*, locked.status AS task_was, l.lease_seconds, h.message
), moved AS (
    -- Carries what the event needs from `claimed`: a join of two CTEs here was
    -- planned as a nested loop, each batch's rows compared with all of its rows.
    UPDATE tasks t
    SET status = $12, terminal_reason = NULL, updated_at = now(),
        trace_seq = t.trace_seq + 1
    FROM claimed
    WHERE t.id = claimed.task_id
    RETURNING t.*, claimed.task_was, claimed.message, claimed.lease_seconds,
              to_jsonb(claimed) AS claimed_run
), events AS (
    INSERT INTO trace_events (task_id, seq, tenant_id, run_id, kind, from_status,
                              to_status, actor, message, data)
    SELECT id, trace_seq, tenant_id, current_run_id, 'worker_receipt', task_was,
           $12, $5, message,
           jsonb_build_object('via', $7::text, 'lease_seconds', lease_seconds)
    FROM moved
)
SELECT * FROM moved;

-- name: move_tasks
-- Moves tasks the caller has locked to status $2, each only while in one of the
-- statuses $10, with its trace event of kind $3, a batch in one statement. $1 the task
-- ids, $4 the terminal reason; then per task its status before ($5), run ($6), actor
-- ($7), message ($8) and data ($9). A task no longer in $10 is left as it is, without
-- an event, and is missing from what the statement returns.
WITH moved AS (
    UPDATE tasks t
    SET status = $2, terminal_reason = $4, updated_at = now(), trace_seq = t.trace_seq + 1
    WHERE t.id = ANY($1::uuid[]) AND t.status = ANY($10::text[])
    RETURNING t.*
), events AS (
    INSERT INTO trace_events (task_id, seq, tenant_id, run_id, kind, from_status,
                              to_status, actor, message, data)
    SELECT moved.id, moved.trace_seq, moved.tenant_id, e.run_id, $3, e.from_status, $2,
           e.actor, e.message, e.data
    FROM unnest($1::uuid[], $5::text[], $6::uuid[], $7::text[], $8::text[], $9::jsonb[])
         AS e(task_id, from_status, run_id, actor, message, data)
    JOIN moved ON moved.id = e.task_id
)
SELECT * FROM moved;

-- name: heartbeat_if_owner
-- Extends the lease of a running run only for the holder of its current claim token.
UPDATE runs SET lease_until = now() + make_interval(secs => $4), heartbeat_at = now()
WHERE id = $1 AND attempt = $2 AND claim_token_hash = $3 AND status = 'running'
RETURNING lease_until, heartbeat_at;

-- name: finish_runs_if_owner
-- Records the outcome $4 of runs in one of the statuses $7 ($1 ids, $2 attempts, $3
-- token hashes), each only for the holder of its claim token; a batch in one statement.
UPDATE runs r
SET status = $4, failure_kind = $5, error = $6, finished_at = now(), lease_until = NULL
FROM unnest($1::uuid[], $2::int[], $3::text[]) AS f(run_id, attempt, token_hash)
WHERE r.id = f.run_id AND r.attempt = f.attempt AND r.claim_token_hash = f.token_hash
  AND r.status = ANY($7::text[])
RETURNING r.id, r.claim_token_hash;

-- name: complete_runs
-- Successful outcomes, a batch in one statement: each run ($1) only for the holder of
-- its claim token ($2 attempts, $3 token hashes) while it runs. The tasks are locked
-- first, in id order, like every batch's; then the runs end with their token usage ($4,
-- $5; NULL keeps what was recorded), the tasks move to succeeded, and each gets its
-- `succeeded` event: actor $6, message $7, data $8, per run. The statuses: tasks from
-- $9 to $11, runs from $10 to $12. Returns each moved task with the token hash that
-- finished it (finished_by).
WITH outcome AS (
    SELECT * FROM unnest($1::uuid[], $2::int[], $3::text[], $4::int[], $5::int[],
                         $6::text[], $7::text[], $8::jsonb[])
        AS o(run_id, attempt, token_hash, input_tokens, output_tokens, actor, message, data)
), locked AS (
    SELECT t.current_run_id, t.status FROM tasks t
    WHERE t.current_run_id = ANY($1::uuid[]) AND t.status = ANY($9::text[])
    ORDER BY t.id
    FOR UPDATE
), finished AS (
    UPDATE runs r
    SET status = $12, finished_at = now(), lease_until = NULL,
        input_tokens = coalesce(o.input_tokens, r.input_tokens),
        output_tokens = coalesce(o.output_tokens, r.output_tokens)
    FROM outcome o
    JOIN locked ON locked.current_run_id = o.run_id
    WHERE r.id = o.run_id AND r.attempt = o.attempt AND r.claim_token_hash = o.token_hash
      AND r.status = ANY($10::text[])
    RETURNING r.task_id, r.claim_token_hash, locked.status AS task_was, o.actor, o.message,
              o.data
), moved AS (
    -- Carries the event's fields along: a join of two CTEs is planned as a nested
    -- loop, each row of a batch compared with every other.
    UPDATE tasks t
    SET status = $11, terminal_reason = NULL, updated_at = now(),
        trace_seq = t.trace_seq + 1
    FROM finished f
    WHERE t.id = f.task_id
    RETURNING t.*, f.claim_token_hash AS finished_by, f.task_was, f.actor AS event_actor,
              f.message AS event_message, f.data AS event_data
), events AS (
    INSERT INTO trace_events (task_id, seq, tenant_id, run_id, kind, from_status,
                              to_status, actor, message, data)
    SELECT id, trace_seq, tenant_id, current_run_id, 'succeeded', task_was, $11,
           event_actor, event_message, event_data
    FROM moved
)
SELECT * FROM moved;

-- name: runs_held
-- Which of these fences ($1 runs, $2 attempts, $3 token hashes) still hold their run.
SELECT r.id, r.claim_token_hash FROM runs r
JOIN unnest($1::uuid[], $2::int[], $3::text[]) AS f(run_id, attempt, token_hash)
  ON r.id = f.run_id AND r.attempt = f.attempt AND r.claim_token_hash = f.token_hash
WHERE r.status = 'running';

-- name: release_run_if_owner
-- Hands a run in one of the statuses $5 back unfinished: to $4 (queued) again, same
-- attempt, claim cleared.
UPDATE runs
SET status = $4, claimed_by = NULL, claim_token_hash = NULL, lease_until = NULL,
    available_at = now()
WHERE id = $1 AND attempt = $2 AND claim_token_hash = $3 AND status = ANY($5::text[])
RETURNING *;

-- name: schedule_next_attempt
-- The next run ($1, status $8) after a failed or lost attempt of task $2 (run $3), due
-- after the backoff: base $5 * 2^(n-1) seconds capped at $6, times a jitter in [0.5, 1)
-- so retries of one outage spread out. The task moves from a status in $4 to $7.
WITH next_run AS (
    INSERT INTO runs (id, task_id, tenant_id, lane, attempt, status, previous_run_id,
                      available_at)
    SELECT $1, t.id, t.tenant_id, t.lane, t.attempt + 1, $8, t.current_run_id,
           now() + make_interval(
               secs => least($6::float8, $5::float8 * power(2, t.attempt - 1))
                       * (0.5 + random() * 0.5))
    FROM tasks t
    WHERE t.id = $2 AND t.current_run_id = $3 AND t.status = ANY($4::text[])
    RETURNING *
)
UPDATE tasks
SET status = $7, attempt = next_run.attempt, current_run_id = next_run.id,
    terminal_reason = NULL, updated_at = now()
FROM next_run
WHERE tasks.id = next_run.task_id AND tasks.status = ANY($4::text[])
RETURNING tasks.*, next_run.available_at AS next_available_at;

-- name: expired_leases
-- Running runs whose lease has passed, oldest first (the reaper locks each task after).
-- The status is a literal: it is the predicate of the runs_running index.
SELECT id, task_id, attempt, lane, claimed_by, lease_until FROM runs
WHERE status = 'running' AND lease_until < now()
ORDER BY lease_until
LIMIT $1;

-- name: lose_run_if_expired
-- The reaper's guard: the run (in one of the statuses $3) must still be expired when
-- the task lock is held, so a heartbeat that landed in between wins; it becomes $2.
UPDATE runs
SET status = $2, failure_kind = 'lease_expired', finished_at = now(),
    error = 'lease expired; last heartbeat ' || coalesce(heartbeat_at::text, 'never')
WHERE id = $1 AND status = ANY($3::text[]) AND lease_until < now()
RETURNING *;

-- name: stale_dispatches
-- Dispatched runs nobody claimed within their lane's dispatch timeout. The status is a
-- literal: it is the predicate of the runs_dispatched index.
SELECT r.id, r.task_id, r.lane FROM runs r
WHERE r.status = 'dispatched'
  AND r.dispatched_at < now() - make_interval(secs => $1)
  AND r.lane = ANY($2::text[])
ORDER BY r.dispatched_at
LIMIT $3;

-- name: redispatch_run
-- A dispatched run (one of the statuses $3) back to $2 (queued), so the dispatcher
-- sends a fresh hint.
UPDATE runs SET status = $2, available_at = now()
WHERE id = $1 AND status = ANY($3::text[])
RETURNING *;

-- name: claim_next_run
-- The HTTP worker protocol's claim-next: the oldest waiting run (a status in $4, its
-- task's in $3) in lanes $1 of tenant $2, its task locked (SKIP LOCKED, so concurrent
-- workers take different runs).
SELECT r.id, r.task_id, r.attempt, r.lane
FROM runs r
JOIN tasks t ON t.id = r.task_id AND t.current_run_id = r.id
              AND t.status = ANY($3::text[])
WHERE r.status = ANY($4::text[]) AND r.available_at <= now()
  AND r.lane = ANY($1::text[]) AND t.tenant_id = $2
ORDER BY r.available_at
LIMIT 1
FOR UPDATE OF t SKIP LOCKED;

-- name: pause_run_if_owner
-- The agent stopped at a tool call needing approval: keep its SDK state, end the claim;
-- the run moves from a status in $6 to $5 (paused).
UPDATE runs
SET status = $5, saved_state = $4, claimed_by = NULL, claim_token_hash = NULL,
    lease_until = NULL
WHERE id = $1 AND attempt = $2 AND claim_token_hash = $3 AND status = ANY($6::text[])
RETURNING *;

-- name: set_pending_approval
-- The tool call waiting for (or decided by) an operator, on a task the caller locked.
UPDATE tasks SET pending_approval = $2, updated_at = now() WHERE id = $1 RETURNING *;

-- name: resume_paused_run
-- An operator decided the pending tool call: the paused run (a status in $3) is queued
-- again ($2), same attempt.
UPDATE runs SET status = $2, available_at = now()
WHERE id = $1 AND status = ANY($3::text[])
RETURNING *;

-- name: saved_state_if_owner
-- The SDK state a paused run left, for the worker that now holds the run.
SELECT saved_state FROM runs
WHERE id = $1 AND attempt = $2 AND claim_token_hash = $3 AND status = 'running';

-- name: record_usage_if_owner
-- Token usage of the run so far.
UPDATE runs SET input_tokens = $4, output_tokens = $5
WHERE id = $1 AND attempt = $2 AND claim_token_hash = $3 AND status = 'running'
RETURNING id;

-- name: append_spans
-- SDK spans as trace events of tasks the caller has locked, several tasks in one
-- statement, each span numbered after its task's last event; a span already stored (a
-- resumed run, a retried write) is skipped. Per span: task ($1), run ($2), actor ($3),
-- span id ($4), kind ($5), message ($6), data ($7).
WITH given AS (
    SELECT DISTINCT ON (s.task_id, s.span_id) s.*
    FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[],
                $7::jsonb[]) WITH ORDINALITY
         AS s(task_id, run_id, actor, span_id, kind, message, data, n)
    WHERE NOT EXISTS (
        SELECT 1 FROM trace_events e WHERE e.task_id = s.task_id AND e.span_id = s.span_id)
    ORDER BY s.task_id, s.span_id, s.n
), fresh AS (
    SELECT given.*, row_number() OVER (PARTITION BY task_id ORDER BY n) AS k FROM given
), counted AS (
    SELECT task_id, count(*) AS added FROM fresh GROUP BY task_id
), bump AS (
    UPDATE tasks t SET trace_seq = t.trace_seq + counted.added
    FROM counted
    WHERE t.id = counted.task_id
    RETURNING t.id, t.trace_seq - counted.added AS last_seq, t.tenant_id
)
INSERT INTO trace_events (task_id, seq, tenant_id, run_id, kind, actor, message, data,
                          span_id)
SELECT fresh.task_id, bump.last_seq + fresh.k, bump.tenant_id, fresh.run_id, fresh.kind,
       fresh.actor, fresh.message, fresh.data, fresh.span_id
FROM fresh JOIN bump ON bump.id = fresh.task_id
RETURNING task_id;

-- name: holds_run_or_was_cancelled
-- Whether this fence holds the run, or held it when an operator cancelled it (the run
-- in one of the statuses $4): the spans of a cancelled run still belong in its trace.
SELECT 1 FROM runs
WHERE id = $1 AND attempt = $2 AND claim_token_hash = $3
  AND status = ANY($4::text[]);
