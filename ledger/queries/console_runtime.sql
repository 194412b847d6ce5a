-- The operator console's reads of the agent runtime (`ledger/runtime_overview.py`):
-- sessions with their lineage, channels with their messages, refused spawns. Each is
-- scoped to one tenant, and returns what `session_state` (`ledger/agent_sessions.py`)
-- reads a session's state from: its state as written, whether its claim holds its
-- run, its task's status. Sessions have no tenant index of their own: the lists walk
-- the tenant's task page index, one session per task.

-- name: console_agent_sessions
-- Tenant $1's sessions, newest task first, after the task keyset cursor ($2, $3) when
-- given, at most $4: each with its task's columns, the session as jsonb (with its
-- run's channel), whether its claim holds the run, its parent's name and its last
-- activity (the latest of its own update, its run's heartbeat or end and its run
-- channel's last message). A walk of the tenant's task page index, one lookup per
-- join: a filter by state is the caller's (`ledger/runtime_overview.py`).
SELECT t.*, to_jsonb(s) || jsonb_build_object('channel_id', c.id) AS session,
       coalesce(r.status = 'running' AND r.claim_token_hash = s.claim_token_hash
                AND r.lease_until > now(), false) AS held,
       p.name AS parent_name,
       greatest(s.updated_at, r.heartbeat_at, r.finished_at, c.last_activity_at)
           AS last_activity_at
FROM tasks t
JOIN agent_sessions s ON s.task_id = t.id
LEFT JOIN runs r ON r.id = s.run_id
LEFT JOIN coordination_channels c ON c.run_id = s.run_id
LEFT JOIN agent_sessions p ON p.id = s.parent_session_id
WHERE t.tenant_id = $1
  AND ($2::timestamptz IS NULL OR (t.created_at, t.id) < ($2, $3::uuid))
ORDER BY t.created_at DESC, t.id DESC
LIMIT $4;

-- name: console_agent_session
-- One session of tenant $2 ($1), as console_agent_sessions reads each.
SELECT t.*, to_jsonb(s) || jsonb_build_object('channel_id', c.id) AS session,
       coalesce(r.status = 'running' AND r.claim_token_hash = s.claim_token_hash
                AND r.lease_until > now(), false) AS held,
       p.name AS parent_name,
       greatest(s.updated_at, r.heartbeat_at, r.finished_at, c.last_activity_at)
           AS last_activity_at
FROM agent_sessions s
JOIN tasks t ON t.id = s.task_id
LEFT JOIN runs r ON r.id = s.run_id
LEFT JOIN coordination_channels c ON c.run_id = s.run_id
LEFT JOIN agent_sessions p ON p.id = s.parent_session_id
WHERE s.id = $1 AND s.tenant_id = $2;

-- name: console_session_tree
-- The sessions of tenant $2's session tree rooted at $1 (the root included), shallowest
-- first, then oldest, at most $3: each with its parent, depth, task, whether its claim
-- holds its run and its task's status (to read its state).
SELECT s.id, s.name, s.state, s.parent_session_id, s.spawn_depth, s.spawn_role,
       s.task_id, t.status AS task_status,
       coalesce(r.status = 'running' AND r.claim_token_hash = s.claim_token_hash
                AND r.lease_until > now(), false) AS held
FROM agent_sessions s
JOIN tasks t ON t.id = s.task_id
LEFT JOIN runs r ON r.id = s.run_id
WHERE s.root_session_id = $1 AND s.tenant_id = $2
ORDER BY s.spawn_depth, s.created_at, s.id
LIMIT $3;

-- name: console_task_session
-- The session of tenant $1's task $2, its id and name (no row: never claimed).
SELECT id, name FROM agent_sessions WHERE tenant_id = $1 AND task_id = $2;

-- name: console_workspace_channels
-- Tenant $1's named channels, those of (workspace, name) pairs $2, $3 (the lanes file
-- declares them; each is made in a tenant when a session first needs it), by
-- workspace and name.
SELECT c.*
FROM unnest($2::text[], $3::text[]) AS d(workspace, name)
JOIN coordination_channels c
  ON c.tenant_id = $1 AND c.workspace = d.workspace AND c.name = d.name
ORDER BY c.workspace, c.name;

-- name: console_run_channels
-- The run channels of tenant $1's newest tasks that have a session, after the task
-- keyset cursor ($2, $3) when given, at most $4 tasks: each channel (as jsonb) with
-- its task's columns, its run's attempt and its task's session.
WITH page AS (
    SELECT t.*, s.id AS session_id, s.name AS session_name
    FROM tasks t
    JOIN agent_sessions s ON s.task_id = t.id
    WHERE t.tenant_id = $1
      AND ($2::timestamptz IS NULL OR (t.created_at, t.id) < ($2, $3::uuid))
    ORDER BY t.created_at DESC, t.id DESC
    LIMIT $4
)
SELECT page.*, page.title AS task_title, to_jsonb(c) AS channel, r.attempt AS run_attempt
FROM page
JOIN runs r ON r.task_id = page.id
JOIN coordination_channels c ON c.run_id = r.id
ORDER BY page.created_at DESC, page.id DESC, r.attempt DESC;

-- name: console_channel
-- One channel of tenant $2 ($1) with its message count, and for a run channel its
-- run's attempt, its task's title and its task's session.
SELECT c.*, r.attempt AS run_attempt, t.title AS task_title, s.id AS session_id,
       s.name AS session_name
FROM coordination_channels c
LEFT JOIN runs r ON r.id = c.run_id
LEFT JOIN tasks t ON t.id = c.task_id
LEFT JOIN agent_sessions s ON s.task_id = c.task_id
WHERE c.id = $1 AND c.tenant_id = $2;

-- name: console_channel_messages
-- Channel $1's messages (tenant $2) after sequence number $3, the newest $4 of them,
-- oldest first: each with its sender's and addressee's names and the sequence number
-- of the message it answers.
SELECT m.*, f.name AS from_name, a.name AS to_name, o.seq AS reply_to_seq
FROM (
    SELECT * FROM channel_messages
    WHERE channel_id = $1 AND tenant_id = $2 AND seq > $3
    ORDER BY seq DESC
    LIMIT $4
) m
LEFT JOIN agent_sessions f ON f.id = m.from_session_id
LEFT JOIN agent_sessions a ON a.id = m.to_session_id
LEFT JOIN channel_messages o ON o.id = m.reply_to_message_id
ORDER BY m.seq;

-- name: console_spawn_refusals
-- The refused spawns (`spawn_refused` events, which the spawn writes in the parent's
-- trace) of tenant $1's newest $2 sessions, newest first, at most $3: each with the
-- parent session and its task. Trace events have no index by kind, so each of those
-- sessions' traces is read by its task (the LATERAL with its LIMIT keeps it a lookup
-- per session, never a scan of every trace).
WITH parents AS (
    SELECT t.id AS task_id, t.title AS task_title, s.id AS session_id,
           s.name AS session_name
    FROM tasks t
    JOIN agent_sessions s ON s.task_id = t.id
    WHERE t.tenant_id = $1
    ORDER BY t.created_at DESC, t.id DESC
    LIMIT $2
)
SELECT e.task_id, e.seq, e.run_id, e.actor, e.message, e.data, e.created_at,
       p.task_title, p.session_id, p.session_name
FROM parents p
CROSS JOIN LATERAL (
    SELECT * FROM trace_events
    WHERE task_id = p.task_id AND kind = 'spawn_refused' AND tenant_id = $1
    ORDER BY seq DESC
    LIMIT $3
) e
ORDER BY e.created_at DESC, e.task_id, e.seq DESC
LIMIT $3;
