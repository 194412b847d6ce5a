-- name: lock_session
-- A session of tenant $2, locked until the transaction ends: spawns in one session tree
-- take turns on its root, so concurrent spawns (from any API replica) see each other's
-- children and cannot overshoot a budget together.
SELECT * FROM agent_sessions WHERE id = $1 AND tenant_id = $2 FOR UPDATE;

-- name: live_spawned_counts
-- In session tree $1 and workspace $2: the spawned sessions not stopped whose task is
-- not finished (statuses $4), all of them and those whose parent is $3.
SELECT count(*) AS in_tree,
       count(*) FILTER (WHERE s.parent_session_id = $3) AS children
FROM agent_sessions s
JOIN tasks t ON t.id = s.task_id
WHERE s.root_session_id = $1 AND s.lane = $2 AND s.type = 'spawned'
  AND s.state NOT IN ('stopping', 'stopped') AND t.status <> ALL($4::text[]);

-- name: insert_spawned_session
-- A spawned session for the new task $3, waiting for its first claim: id $1, tenant
-- $2, name $4, agent $5, model $6, provider $7, workspace $8, parent $9, root $10, depth
-- $11, role $12, TTL $13 seconds from now, auto-stop $14, budget $15, permissions $16.
INSERT INTO agent_sessions (
    id, tenant_id, task_id, name, type, state, agent_name, model, provider, lane,
    parent_session_id, root_session_id, spawn_depth, spawn_role, ttl_expires_at,
    auto_stop_on_parent, spawn_budget, permission_policy)
VALUES ($1, $2, $3, $4, 'spawned', 'starting', $5, $6, $7, $8, $9, $10, $11, $12,
        now() + make_interval(secs => $13), $14, $15, $16)
RETURNING *, NULL::uuid AS channel_id;

-- name: sessions_to_stop
-- Spawned sessions not stopped yet that should be, oldest first, at most $2, each with
-- why: its task finished (statuses $1: `completed`), its TTL passed (`ttl_expired`), or
-- it stops with its parent and the parent stopped: stopped itself, or its task finished
-- (`parent_stopped`).
SELECT s.id, s.tenant_id, s.task_id,
       CASE WHEN t.status = ANY($1::text[]) THEN 'completed'
            WHEN s.ttl_expires_at < now() THEN 'ttl_expired'
            ELSE 'parent_stopped' END AS reason
FROM agent_sessions s
JOIN tasks t ON t.id = s.task_id
JOIN agent_sessions p ON p.id = s.parent_session_id
JOIN tasks pt ON pt.id = p.task_id
WHERE s.type = 'spawned' AND s.state NOT IN ('stopping', 'stopped')
  AND (t.status = ANY($1::text[]) OR s.ttl_expires_at < now()
       OR (s.auto_stop_on_parent AND (p.state = 'stopped' OR pt.status = ANY($1::text[]))))
ORDER BY s.created_at
LIMIT $2;

-- name: stop_session
-- A session stopped on purpose, with its reason ($2); one already stopped is left.
UPDATE agent_sessions SET state = 'stopped', stop_reason = $2, updated_at = now()
WHERE id = $1 AND state <> 'stopped'
RETURNING id;

-- name: spawned_children
-- The sessions session $1 of tenant $2 spawned, oldest first: each with whether its
-- claim holds its run (as in session_by_credential), its task's status and end, and
-- the storage reference of its task's newest final output.
SELECT s.id, s.task_id, s.agent_name, s.state, s.stop_reason, t.status AS task_status,
       t.terminal_reason,
       coalesce(r.status = 'running' AND r.claim_token_hash = s.claim_token_hash
                AND r.lease_until > now(), false) AS held,
       (SELECT a.storage_ref FROM artifacts a
        WHERE a.task_id = s.task_id AND a.name = 'final_output.md'
        ORDER BY a.created_at DESC LIMIT 1) AS output_ref
FROM agent_sessions s
JOIN tasks t ON t.id = s.task_id
LEFT JOIN runs r ON r.id = s.run_id
WHERE s.parent_session_id = $1 AND s.tenant_id = $2
ORDER BY s.created_at, s.id;
