-- name: insert_ticket_agent
-- A ticket agent $1 of tenant $2 for ticket $3 working task $4, in state $5 (with stop
-- reason $6 when it starts stopped: its task was denied); lane $7, provider $8, model
-- $9, profile $10, prompt $11, created by $12, replacing agent $13.
INSERT INTO ticket_agents (id, tenant_id, ticket_id, task_id, state, stop_reason, lane,
                           model_provider, model, profile, prompt, created_by,
                           replaces_agent_id, stopped_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13,
        CASE WHEN $6::text IS NULL THEN NULL ELSE now() END)
RETURNING *;

-- name: insert_ticket_agent_task
-- Records that agent $1 of tenant $3 has task $2, made for reason $4.
INSERT INTO ticket_agent_tasks (agent_id, task_id, tenant_id, reason)
VALUES ($1, $2, $3, $4);

-- name: get_ticket_agent
-- Agent $2 of tenant $1 with its latest task's status.
SELECT a.*, t.status AS task_status, t.attempt AS task_attempt,
       t.terminal_reason AS task_terminal_reason
FROM ticket_agents a JOIN tasks t ON t.id = a.task_id
WHERE a.tenant_id = $1 AND a.id = $2;

-- name: lock_ticket_agent
-- Agent $2 of tenant $1 with its latest task's status, locked until the transaction
-- ends (a stop, wake or restart decides on what it reads).
SELECT a.*, t.status AS task_status, t.attempt AS task_attempt,
       t.terminal_reason AS task_terminal_reason
FROM ticket_agents a JOIN tasks t ON t.id = a.task_id
WHERE a.tenant_id = $1 AND a.id = $2
FOR UPDATE OF a;

-- name: assigned_agent_of_ticket
-- The id of the agent assigned to ticket $2 of tenant $1 (none when none is).
SELECT id FROM ticket_agents
WHERE tenant_id = $1 AND ticket_id = $2 AND state = 'assigned';

-- name: list_ticket_agents
-- Tenant $1's agents newest first, with their latest task's status: of status $2 when
-- given (`stopped`, or their task's status while assigned), of ticket $3 when given;
-- $4 at most, after the first $5.
SELECT a.*, t.status AS task_status, t.attempt AS task_attempt,
       t.terminal_reason AS task_terminal_reason
FROM ticket_agents a JOIN tasks t ON t.id = a.task_id
WHERE a.tenant_id = $1
  AND ($2::text IS NULL
       OR (CASE WHEN a.state = 'stopped' THEN 'stopped' ELSE t.status END) = $2)
  AND ($3::uuid IS NULL OR a.ticket_id = $3)
ORDER BY a.created_at DESC, a.id DESC
LIMIT $4 OFFSET $5;

-- name: active_ticket_agents
-- Tenant $1's assigned agents whose latest task is not in one of the statuses $2 (the
-- finished ones), newest first, at most $3.
SELECT a.*, t.status AS task_status, t.attempt AS task_attempt,
       t.terminal_reason AS task_terminal_reason
FROM ticket_agents a JOIN tasks t ON t.id = a.task_id
WHERE a.tenant_id = $1 AND a.state = 'assigned' AND t.status <> ALL($2::text[])
ORDER BY a.created_at DESC, a.id DESC
LIMIT $3;

-- name: ticket_agent_status_counts
-- Tenant $1's agents per status (`stopped`, or their latest task's status while
-- assigned).
SELECT (CASE WHEN a.state = 'stopped' THEN 'stopped' ELSE t.status END) AS status,
       count(*) AS agents
FROM ticket_agents a JOIN tasks t ON t.id = a.task_id
WHERE a.tenant_id = $1
GROUP BY 1;

-- name: ticket_agent_durations
-- How many runs of tenant $1's agents' tasks have finished, and their average length in
-- seconds (from claim to end).
SELECT count(*) AS finished_runs,
       avg(extract(epoch FROM r.finished_at - r.started_at))::float8 AS average_seconds
FROM ticket_agent_tasks at JOIN runs r ON r.task_id = at.task_id
WHERE at.tenant_id = $1 AND r.started_at IS NOT NULL AND r.finished_at IS NOT NULL;

-- name: stop_ticket_agent_if_assigned
-- Stops agent $2 of tenant $1 for reason $3, when it is assigned; nothing otherwise.
UPDATE ticket_agents
SET state = 'stopped', stop_reason = $3, stopped_at = now(), updated_at = now()
WHERE tenant_id = $1 AND id = $2 AND state = 'assigned'
RETURNING *;

-- name: move_ticket_agent_to_task
-- Gives assigned agent $2 of tenant $1 its new task $3, when its latest task is still
-- $4; nothing otherwise.
UPDATE ticket_agents SET task_id = $3, updated_at = now()
WHERE tenant_id = $1 AND id = $2 AND state = 'assigned' AND task_id = $4
RETURNING *;

-- name: ticket_agent_tasks
-- Agent $2's tasks in tenant $1, newest first, at most $3.
SELECT t.id, t.title, t.lane, t.status, t.attempt, t.terminal_reason, at.reason,
       t.created_at, t.updated_at
FROM ticket_agent_tasks at JOIN tasks t ON t.id = at.task_id
WHERE at.tenant_id = $1 AND at.agent_id = $2
ORDER BY at.created_at DESC, t.id DESC
LIMIT $3;

-- name: ticket_agent_logs
-- The latest $3 trace events of agent $2's tasks in tenant $1, in the order they were
-- written.
SELECT * FROM (
    SELECT e.*
    FROM ticket_agent_tasks at JOIN trace_events e ON e.task_id = at.task_id
    WHERE at.tenant_id = $1 AND at.agent_id = $2
    ORDER BY e.created_at DESC, e.task_id DESC, e.seq DESC
    LIMIT $3
) AS latest
ORDER BY created_at, task_id, seq;
