-- name: thread_history
-- A thread's messages in order: what a thread run is given as the conversation so far.
SELECT seq, task_id, role, agent, content, data, created_at FROM thread_messages
WHERE thread_id = $1 ORDER BY seq;

-- name: append_thread_messages
-- Messages of run $2 appended to thread $1, numbered after the last one; per message:
-- role ($3), agent ($4), content ($5), data ($6). The thread row's update numbers them
-- and serialises writers of the same thread.
WITH counter AS (
    UPDATE threads
    SET message_count = message_count + cardinality($3::text[]), updated_at = now(),
        last_task_id = $2
    WHERE id = $1
    RETURNING tenant_id, message_count - cardinality($3::text[]) AS before
)
INSERT INTO thread_messages (thread_id, seq, tenant_id, task_id, role, agent, content, data)
SELECT $1, counter.before + m.ord, counter.tenant_id, $2, m.role, m.agent, m.content, m.data
FROM counter,
     unnest($3::text[], $4::text[], $5::text[], $6::jsonb[]) WITH ORDINALITY
     AS m(role, agent, content, data, ord);

-- name: insert_approval_request
-- The request a paused tool call waits on, written with the pause: id ($1), tenant ($2),
-- task ($3), run ($4), call id ($5), tool ($6), redacted arguments ($7), their sha256
-- ($8), the roles that may decide ($9).
INSERT INTO approval_requests (id, tenant_id, task_id, run_id, call_id, tool, arguments,
                               arguments_sha256, deciders)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
RETURNING *;

-- name: settle_approval_requests
-- The decision on task $1's pending approval requests: status ($2: approved, rejected
-- or cancelled), reason ($3), by whom ($4).
UPDATE approval_requests
SET status = $2, reason = $3, resolved_by = $4, resolved_at = now()
WHERE task_id = $1 AND status = 'pending';

-- name: insert_thread
-- A new conversation: id ($1), tenant ($2), the name the client gives it ($3, the id's
-- text when it gives none), agent ($4), title ($5), metadata ($6), by whom ($7). A name
-- already taken in the tenant inserts nothing and returns no row.
INSERT INTO threads (id, tenant_id, session_key, agent_type, title, metadata, created_by)
VALUES ($1::uuid, $2, coalesce($3, $1::uuid::text), $4, $5, $6, $7)
ON CONFLICT (tenant_id, session_key) DO NOTHING
RETURNING *;

-- name: get_thread
-- One thread, scoped to its tenant: another tenant's thread does not exist.
SELECT * FROM threads WHERE tenant_id = $1 AND id = $2;

-- name: get_thread_by_session
-- The thread a client names by its session id ($2), in tenant $1.
SELECT * FROM threads WHERE tenant_id = $1 AND session_key = $2;

-- name: list_threads
-- The tenant's threads, most recently active first, optionally for one agent ($2),
-- at most $3.
SELECT * FROM threads
WHERE tenant_id = $1 AND ($2::text IS NULL OR agent_type = $2)
ORDER BY updated_at DESC, id DESC
LIMIT $3;

-- name: get_approval_request
-- One approval request, scoped to its tenant: another tenant's does not exist.
SELECT * FROM approval_requests WHERE tenant_id = $1 AND id = $2;

-- name: task_approval_requests
-- Task $2's approval requests in tenant $1, oldest first; only the pending ones when $3.
SELECT * FROM approval_requests
WHERE tenant_id = $1 AND task_id = $2 AND (NOT $3 OR status = 'pending')
ORDER BY created_at, id;
