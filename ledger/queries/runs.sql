-- name: insert_run
-- One attempt at a task, queued and due now.
INSERT INTO runs (id, task_id, tenant_id, lane, attempt, status, previous_run_id)
VALUES ($1, $2, $3, $4, $5, 'queued', $6)
RETURNING *;

-- name: settle_run_if_unfinished
-- Cancel or block: ends a run that has not finished yet (one in the statuses $5) with
-- status $2; a finished run is left alone.
UPDATE runs
SET status = $2, failure_kind = $3, error = $4, finished_at = now()
WHERE id = $1 AND status = ANY($5::text[])
RETURNING *;

-- name: run_task_id
-- The task a run belongs to.
SELECT task_id FROM runs WHERE id = $1;

-- name: get_run
-- One run of a tenant.
SELECT * FROM runs WHERE id = $1 AND tenant_id = $2;
