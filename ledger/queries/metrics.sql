-- name: lane_backlog
-- Per lane: runs waiting to be claimed (due and queued or dispatched) and the oldest's age.
SELECT lane, count(*) AS depth,
       extract(epoch FROM now() - min(available_at))::float8 AS oldest_age_seconds
FROM runs
WHERE status IN ('queued', 'dispatched') AND available_at <= now()
GROUP BY lane;

-- name: approvals_waiting
-- Per lane: tasks awaiting an operator and how long the oldest has waited.
SELECT lane, count(*) AS pending,
       extract(epoch FROM now() - min(updated_at))::float8 AS oldest_age_seconds
FROM tasks
WHERE phase = 'awaiting_approval'  -- the phase has the index (migration 0008)
GROUP BY lane;
