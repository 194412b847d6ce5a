-- name: lane_send
-- Enqueues hints (a message id already in the lane is dropped: duplicate detection) and
-- wakes the lane's receivers listening on workbench_lanes as it commits.
WITH sent AS (
    INSERT INTO lane_messages (lane, message_id, body)
    SELECT $1, message_id, body FROM unnest($2::text[], $3::jsonb[]) AS m(message_id, body)
    ON CONFLICT (lane, message_id) DO NOTHING
)
SELECT pg_notify('workbench_lanes', $1);

-- name: lane_receive
-- Locks up to $2 visible messages for $3 seconds and counts the delivery.
WITH picked AS (
    SELECT id FROM lane_messages
    WHERE lane = $1 AND visible_at <= now()
    ORDER BY visible_at, id
    LIMIT $2
    FOR UPDATE SKIP LOCKED
)
UPDATE lane_messages m
SET visible_at = now() + make_interval(secs => $3), lock_token = gen_random_uuid(),
    delivery_count = m.delivery_count + 1
FROM picked
WHERE m.id = picked.id
RETURNING m.id, m.message_id, m.body, m.visible_at, m.lock_token, m.delivery_count;

-- name: lane_take
-- Removes up to $2 visible messages and returns them, for a caller that acts on them in
-- the same transaction (a worker's claim): they are gone only if it commits.
DELETE FROM lane_messages m
WHERE m.id IN (
    SELECT id FROM lane_messages
    WHERE lane = $1 AND visible_at <= now()
    ORDER BY visible_at, id
    LIMIT $2
    FOR UPDATE SKIP LOCKED
)
RETURNING m.*;

-- name: lane_bury
-- A taken message no receiver can read, straight to the dead letters with the reason.
INSERT INTO lane_dead_letters (id, lane, message_id, body, enqueued_at, delivery_count,
                               reason, description)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8);

-- name: lane_complete
-- Removes the messages ($1 ids) still held under their locks ($2); returns the ids
-- removed, as one array.
WITH completed AS (
    DELETE FROM lane_messages m
    USING unnest($1::bigint[], $2::uuid[]) AS c(id, lock_token)
    WHERE m.id = c.id AND m.lock_token = c.lock_token AND m.visible_at > now()
    RETURNING m.id
)
SELECT array_agg(id) FROM completed;

-- name: lane_abandon
-- Makes a locked message visible again at once.
UPDATE lane_messages SET visible_at = now(), lock_token = NULL
WHERE id = $1 AND lock_token = $2 AND visible_at > now()
RETURNING id;

-- name: lane_renew_lock
-- Extends a lock that has not yet expired.
UPDATE lane_messages SET visible_at = now() + make_interval(secs => $3)
WHERE id = $1 AND lock_token = $2 AND visible_at > now()
RETURNING visible_at;

-- name: lane_dead_letter
-- Moves a message to the lane's dead letters with the reason; $2 NULL skips the lock
-- check (used when the delivery count is exceeded at receive time).
WITH moved AS (
    DELETE FROM lane_messages
    WHERE id = $1 AND ($2::uuid IS NULL OR (lock_token = $2 AND visible_at > now()))
    RETURNING *
)
INSERT INTO lane_dead_letters (id, lane, message_id, body, enqueued_at, delivery_count,
                               reason, description)
SELECT id, lane, message_id, body, enqueued_at, delivery_count, $3, $4 FROM moved
RETURNING id;

-- name: lane_depth
-- Messages waiting or locked in a lane, and dead letters.
SELECT (SELECT count(*) FROM lane_messages WHERE lane = $1) AS active,
       (SELECT count(*) FROM lane_dead_letters WHERE lane = $1) AS dead_lettered;
