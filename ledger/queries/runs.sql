-- name: insert_run
-- One attempt at a task, queued and due now.
INSERT INTO runs (id, task_id, tenant_id, lane, attempt, status, previous_run_id)
VALUES ($1, $2, $3, $4, $5, 'queued', $6)
RETURNING *;

-- name: get_run
-- One run of a task.
SELECT * FROM runs WHERE task_id = $1 AND id = $2;

-- name: start_run_if_waiting
-- Claims a queued or dispatched run for in-process execution by $2.
UPDATE runs
SET status = 'running', claimed_by = $2, started_at = now(), heartbeat_at = now()
WHERE id = $1 AND status IN ('queued', 'dispatched')
RETURNING *;

-- name: finish_run_if_running
-- Records a run's outcome; a run no longer running (cancelled, rescued) is left alone.
UPDATE runs
SET status = $2, failure_kind = $3, error = $4, finished_at = now()
WHERE id = $1 AND status = 'running'
RETURNING *;

-- name: settle_run_if_unfinished
-- Cancel or block: ends a run that has not finished yet; a finished run is left alone.
UPDATE runs
SET status = $2, failure_kind = $3, error = $4, finished_at = now()
WHERE id = $1 AND status IN ('queued', 'dispatched', 'running')
RETURNING *;
