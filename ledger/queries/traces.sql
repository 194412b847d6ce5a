-- name: append_trace
-- Appends one event with the task's next sequence number; takes the task's row lock,
-- so events of one task are numbered in commit order without gaps.
WITH next AS (
    UPDATE tasks SET trace_seq = trace_seq + 1 WHERE id = $1 RETURNING trace_seq, tenant_id
)
INSERT INTO trace_events (task_id, seq, tenant_id, run_id, kind, from_status, to_status,
                          actor, message, data)
SELECT $1, next.trace_seq, next.tenant_id, $2, $3, $4, $5, $6, $7, $8 FROM next
RETURNING *;

-- name: list_traces
-- A task's events in order, after sequence number $3, at most $4.
SELECT * FROM trace_events
WHERE tenant_id = $1 AND task_id = $2 AND seq > $3
ORDER BY seq
LIMIT $4;
