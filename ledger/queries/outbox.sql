-- The outbox's statements. Runs are marked `dispatched` and committed before their
-- hints are sent, so no task stays locked while a lane is slow; a send that fails puts
-- its runs back (requeue_unsent), and one that never happens (the dispatcher died after
-- the commit) is rescued by the reaper's dispatch timeout. Tasks are locked before
-- their runs, as everywhere (pipeline.sql).

-- name: lock_due_runs
-- The dispatcher's batch: due queued runs in lanes $2, oldest first, at most $1, each
-- with its task locked (skipped while another dispatcher holds it). The oldest runs are
-- picked first, without locks, from a window of four batches (room to skip what other
-- replicas hold), and only then are their tasks locked, one by one in that order until
-- the batch is full. As one join ordered at the end, Postgres estimated the join at one
-- row and read, joined and sorted every queued run for each batch: 8 ms per batch of
-- 10 at a backlog of 4,000, and a plan that locks before it sorts would lock them all.
SELECT r.id, r.task_id, r.attempt, r.lane, r.dispatch_count,
       extract(epoch FROM now() - r.available_at)::float8 AS waited_seconds
FROM (
    SELECT id, task_id, attempt, lane, dispatch_count, available_at FROM runs
    WHERE status = 'queued' AND lane = ANY($2::text[]) AND available_at <= now()
    ORDER BY available_at
    LIMIT $1 * 4
) AS r
CROSS JOIN LATERAL (
    SELECT FROM tasks t
    WHERE t.id = r.task_id AND t.current_run_id = r.id AND t.status = 'queued'
    FOR UPDATE SKIP LOCKED
) AS locked
ORDER BY r.available_at
LIMIT $1;

-- name: lock_task_run
-- An operator's explicit dispatch: task $1's queued run in lanes $2, due or not, with
-- the task locked (nothing if another dispatcher holds it).
SELECT r.id, r.task_id, r.attempt, r.lane, r.dispatch_count,
       extract(epoch FROM now() - r.available_at)::float8 AS waited_seconds
FROM tasks t
JOIN runs r ON r.id = t.current_run_id AND r.status = 'queued' AND r.lane = ANY($2::text[])
WHERE t.id = $1 AND t.status = 'queued'
FOR UPDATE OF t SKIP LOCKED;

-- name: mark_dispatched
-- Runs $1 whose tasks the caller locked, each only while the run is in one of the
-- statuses $4 and its task in one of $3: the runs move to $6, the tasks to $5, with one
-- `dispatched` event each (actor $2). Returns each moved run's id and its dispatch
-- count, this dispatch included.
WITH moved_runs AS (
    UPDATE runs r
    SET status = $6, dispatched_at = now(), dispatch_count = r.dispatch_count + 1
    FROM tasks t
    WHERE r.id = ANY($1::uuid[]) AND r.status = ANY($4::text[])
      AND t.id = r.task_id AND t.current_run_id = r.id AND t.status = ANY($3::text[])
    RETURNING r.id, r.task_id, r.attempt, r.lane, r.dispatch_count, t.status AS task_was
), moved_tasks AS (
    UPDATE tasks
    SET status = $5, updated_at = now(), trace_seq = tasks.trace_seq + 1
    FROM moved_runs
    WHERE tasks.id = moved_runs.task_id
    RETURNING tasks.id, tasks.trace_seq, tasks.tenant_id, moved_runs.id AS run_id,
              moved_runs.lane, moved_runs.attempt, moved_runs.dispatch_count,
              moved_runs.task_was
), events AS (
    INSERT INTO trace_events (task_id, seq, tenant_id, run_id, kind, from_status,
                              to_status, actor, message, data)
    SELECT id, trace_seq, tenant_id, run_id, 'dispatched', task_was, $5, $2,
           'dispatched to lane ' || lane,
           jsonb_build_object('lane', lane, 'attempt', attempt, 'dispatch_count',
                              dispatch_count)
    FROM moved_tasks
)
SELECT run_id AS id, dispatch_count FROM moved_tasks;

-- name: requeue_unsent
-- Runs whose hints were not sent (the send failed or was abandoned) back to queued: each
-- run ($1) only while it is still in one of the statuses $6 at the dispatch count ($2)
-- of that send, so a claim, a cancel or a newer dispatch that came first wins. The tasks
-- are locked first, in id order, while in one of the statuses $3, and move to $7, the
-- runs to $8; the runs keep their place in line (available_at); one `dispatch_failed`
-- event each: actor $4, message per run $5.
WITH unsent AS (
    SELECT * FROM unnest($1::uuid[], $2::int[], $5::text[])
        AS u(run_id, dispatch_count, message)
), locked AS (
    SELECT t.id, t.status FROM tasks t
    WHERE t.current_run_id = ANY($1::uuid[]) AND t.status = ANY($3::text[])
    ORDER BY t.id
    FOR UPDATE
), requeued AS (
    UPDATE runs r
    SET status = $8
    FROM unsent u, locked
    WHERE r.id = u.run_id AND r.task_id = locked.id AND r.dispatch_count = u.dispatch_count
      AND r.status = ANY($6::text[])
    RETURNING r.id, r.task_id, r.lane, r.attempt, r.dispatch_count, u.message,
              locked.status AS task_was
), moved AS (
    UPDATE tasks t
    SET status = $7, updated_at = now(), trace_seq = t.trace_seq + 1
    FROM requeued
    WHERE t.id = requeued.task_id
    RETURNING t.id, t.trace_seq, t.tenant_id, requeued.id AS run_id, requeued.lane,
              requeued.attempt, requeued.dispatch_count, requeued.message, requeued.task_was
)
INSERT INTO trace_events (task_id, seq, tenant_id, run_id, kind, from_status, to_status,
                          actor, message, data)
SELECT id, trace_seq, tenant_id, run_id, 'dispatch_failed', task_was, $7, $4, message,
       jsonb_build_object('lane', lane, 'attempt', attempt, 'dispatch_count', dispatch_count)
FROM moved
RETURNING task_id;
