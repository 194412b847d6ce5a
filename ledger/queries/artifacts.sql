-- name: list_artifacts
-- A task's artifacts, oldest first.
SELECT * FROM artifacts WHERE tenant_id = $1 AND task_id = $2 ORDER BY created_at, id;

-- name: get_artifact
-- One artifact of a task.
SELECT * FROM artifacts WHERE tenant_id = $1 AND task_id = $2 AND id = $3;

-- name: insert_artifact_if_owner
-- Artifact metadata from a worker, only while it holds run $2 (attempt $3, token hash $4).
-- The id ($1) is derived from the run and the stored object, so a write retried after
-- its answer was lost finds its own row instead of adding a second one.
INSERT INTO artifacts (id, task_id, run_id, tenant_id, name, media_type, storage_ref,
                       sha256, size_bytes, metadata)
SELECT $1, r.task_id, r.id, r.tenant_id, $5, $6, $7, $8, $9, $10
FROM runs r
WHERE r.id = $2 AND r.attempt = $3 AND r.claim_token_hash = $4 AND r.status = 'running'
ON CONFLICT (id) DO UPDATE SET id = EXCLUDED.id
RETURNING *;

-- name: latest_artifact_named
-- The newest artifact of a task with this name.
SELECT * FROM artifacts WHERE task_id = $1 AND name = $2 ORDER BY created_at DESC LIMIT 1;
