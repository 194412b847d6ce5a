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
