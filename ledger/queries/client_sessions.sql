-- name: insert_client_session
-- A new client-side session, its thread and its row in one statement: id ($1), tenant
-- ($2), agent ($3), title ($4), owner ($5), lane ($6), provider ($7), model ($8), the
-- verdict at creation ($9). The thread's session key is its id, as for any thread
-- created directly.
WITH thread AS (
    INSERT INTO threads (id, tenant_id, session_key, agent_type, title, created_by, kind)
    VALUES ($1::uuid, $2, $1::uuid::text, $3, $4, $5, 'client_session')
    RETURNING id, tenant_id, created_at
)
INSERT INTO client_sessions (thread_id, tenant_id, owner, agent_type, lane, provider, model,
                             policy_verdict, created_at)
SELECT id, tenant_id, $5, $3, $6, $7, $8, $9, created_at FROM thread
RETURNING *;

-- name: get_client_session
-- One session, scoped to its tenant: another tenant's session does not exist.
SELECT * FROM client_sessions WHERE tenant_id = $1 AND thread_id = $2;

-- name: lock_running_client_session
-- Session $1, share-locked while it is in status $2 (running): a step is written only
-- under this lock, so completing the session waits for it (and then sees the step).
SELECT true FROM client_sessions WHERE thread_id = $1 AND status = $2 FOR SHARE;

-- name: lock_client_session
-- Session $2 of tenant $1, locked to complete it: waits for steps being written.
SELECT * FROM client_sessions WHERE tenant_id = $1 AND thread_id = $2 FOR UPDATE;

-- name: thread_task_in
-- A task of thread $1 in one of the statuses $2 (the session's step still under way).
SELECT id FROM tasks WHERE thread_id = $1 AND status = ANY($2::text[]) LIMIT 1;

-- name: complete_client_session
-- Session $2 of tenant $1 from status $6 to $3 with its summary ($4) and confidence ($5).
UPDATE client_sessions
SET status = $3, summary = $4, confidence = $5, completed_at = now()
WHERE tenant_id = $1 AND thread_id = $2 AND status = $6
RETURNING *;

-- name: client_session_steps
-- The tasks of session $2 in tenant $1 (its steps) in the order they were taken, each
-- with the timing and token usage of its current run (none for a denied step).
SELECT t.id, t.status, t.run_options, t.mutation_level, t.policy_verdict,
       t.pending_approval, t.terminal_reason, t.attempt, t.created_at,
       r.started_at, r.finished_at,
       coalesce(r.input_tokens, 0) AS input_tokens,
       coalesce(r.output_tokens, 0) AS output_tokens
FROM tasks t LEFT JOIN runs r ON r.id = t.current_run_id
WHERE t.tenant_id = $1 AND t.thread_id = $2
ORDER BY t.created_at, t.id;

-- name: thread_response_exists
-- Whether inference step $2 of thread $1 answered with response id $3.
SELECT EXISTS (
    SELECT 1 FROM thread_messages
    WHERE thread_id = $1 AND task_id = $2 AND data->>'response_id' = $3
);

-- name: thread_latest_response
-- The response id of thread $1's latest answered inference step (none before one).
SELECT data->>'response_id' FROM thread_messages
WHERE thread_id = $1 AND data ? 'response_id'
ORDER BY seq DESC LIMIT 1;

-- name: thread_call_messages
-- Thread $1's messages about tool call $2: the model's call and any executed result.
SELECT role, data FROM thread_messages
WHERE thread_id = $1 AND data->>'call_id' = $2
ORDER BY seq;

-- name: thread_messages_after
-- Thread $1's messages after sequence number $2, in order.
SELECT seq, task_id, role, agent, content, data, created_at FROM thread_messages
WHERE thread_id = $1 AND seq > $2 ORDER BY seq;

-- name: tasks_approval_requests
-- The approval requests of tasks $2 in tenant $1, oldest first.
SELECT * FROM approval_requests
WHERE tenant_id = $1 AND task_id = ANY($2::uuid[])
ORDER BY created_at, id;
