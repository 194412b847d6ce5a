-- name: insert_artifact
-- Artifact metadata; the content lives in the artifact store under storage_ref.
INSERT INTO artifacts (id, task_id, run_id, tenant_id, name, media_type, storage_ref,
                       sha256, size_bytes, metadata)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
RETURNING *;

-- name: list_artifacts
-- A task's artifacts, oldest first.
SELECT * FROM artifacts WHERE tenant_id = $1 AND task_id = $2 ORDER BY created_at, id;

-- name: get_artifact
-- One artifact of a task.
SELECT * FROM artifacts WHERE tenant_id = $1 AND task_id = $2 AND id = $3;
