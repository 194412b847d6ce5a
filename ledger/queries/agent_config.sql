-- name: get_agent_settings
-- Tenant $1's agent runtime settings as last stored, with who stored them and when.
SELECT settings, updated_by, updated_at FROM agent_runtime_settings WHERE tenant_id = $1;

-- name: lock_agent_settings
-- Tenant $1's settings row, locked for the rest of the transaction (made empty, by $2,
-- when the tenant has none yet): concurrent changes are applied one after the other.
INSERT INTO agent_runtime_settings (tenant_id, settings, updated_by)
VALUES ($1, '{}'::jsonb, $2)
ON CONFLICT (tenant_id) DO UPDATE SET tenant_id = EXCLUDED.tenant_id
RETURNING settings;

-- name: store_agent_settings
-- Replaces tenant $1's settings with $2, stored by $3; its row is locked already.
UPDATE agent_runtime_settings SET settings = $2, updated_by = $3, updated_at = now()
WHERE tenant_id = $1
RETURNING settings, updated_by, updated_at;

-- name: lane_workers_seen
-- Per lane: the workers holding a run with a live lease that heartbeat within the last
-- $1 seconds, and the latest heartbeat (the ledger keeps no heartbeat of an idle worker).
SELECT lane, count(DISTINCT claimed_by) AS workers, max(heartbeat_at) AS last_heartbeat_at
FROM runs
WHERE status = 'running' AND lease_until > now()
  AND heartbeat_at > now() - make_interval(secs => $1)
GROUP BY lane;

-- name: lock_agent_starts
-- Tenant $1's agent starts, one at a time until the transaction ends: each counts the
-- live agents after the one before it committed.
SELECT pg_advisory_xact_lock(hashtextextended('agent_starts:' || $1, 0));

-- name: count_live_agent_tasks
-- How many of tenant $1's tasks made from an agent profile (their scope has the key $3)
-- are in one of the statuses $2 (those not finished), one being created in this
-- transaction included.
SELECT count(*) FROM tasks
WHERE tenant_id = $1 AND status = ANY($2::text[]) AND scope ? $3;
