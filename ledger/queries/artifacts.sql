-- name: list_artifacts
-- A task's artifacts, oldest first.
SELECT * FROM artifacts WHERE tenant_id = $1 AND task_id = $2 ORDER BY created_at, id;

-- name: get_artifact
-- One artifact of a task.
SELECT * FROM artifacts WHERE tenant_id = $1 AND task_id = $2 AND id = $3;

-- name: insert_artifacts_if_owner
-- Artifact metadata from workers, each only while its worker holds the run ($2 run, $3
-- attempt, $4 token hash); several in one statement, ids distinct. An id ($1) is
-- derived from the run and the stored object, so a write retried after its answer was
-- lost finds its own row instead of adding a second one.
INSERT INTO artifacts (id, task_id, run_id, tenant_id, name, media_type, storage_ref,
                       sha256, size_bytes, metadata)
SELECT a.id, r.task_id, r.id, r.tenant_id, a.name, a.media_type, a.storage_ref, a.sha256,
       a.size_bytes, a.metadata
FROM unnest($1::uuid[], $2::uuid[], $3::int[], $4::text[], $5::text[], $6::text[],
            $7::text[], $8::text[], $9::bigint[], $10::jsonb[])
     AS a(id, run_id, attempt, token_hash, name, media_type, storage_ref, sha256,
          size_bytes, metadata)
JOIN runs r ON r.id = a.run_id AND r.attempt = a.attempt
           AND r.claim_token_hash = a.token_hash AND r.status = 'running'
ON CONFLICT (id) DO UPDATE SET id = EXCLUDED.id
RETURNING *;

-- name: latest_artifact_named
-- The newest artifact of a task with this name.
SELECT * FROM artifacts WHERE task_id = $1 AND name = $2 ORDER BY created_at DESC LIMIT 1;
