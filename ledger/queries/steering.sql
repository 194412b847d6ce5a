-- name: insert_steering_event
-- A steering event $4 for the assigned agent of ticket $2 in tenant $1 from note $3
-- (source $5, author $6, body $7, open for $8 seconds), when that agent's latest task is
-- not in one of the statuses $9; nothing otherwise. Returns it with the agent's task.
WITH agent AS (
    SELECT a.id, a.task_id, a.tenant_id, a.ticket_id
    FROM ticket_agents a
    JOIN tasks t ON t.id = a.task_id
    WHERE a.tenant_id = $1 AND a.ticket_id = $2 AND a.state = 'assigned'
      AND t.status <> ALL($9::text[])
), inserted AS (
    INSERT INTO steering_events (id, tenant_id, agent_id, ticket_id, note_id, source, author,
                                 body, state, expires_at)
    SELECT $4, agent.tenant_id, agent.id, agent.ticket_id, $3, $5, $6, $7, 'pending',
           now() + make_interval(secs => $8)
    FROM agent
    RETURNING *
)
SELECT inserted.*, agent.task_id FROM inserted, agent;

-- name: deliver_steering_if_holder
-- Marks delivered to the claim of the fence ($1 run, $2 attempt, $3 token hash) the open
-- steering events of the assigned agent whose latest task is $4: the pending ones, and
-- the ones delivered to an earlier claim and never acknowledged; nothing unless the
-- fence still holds a running run of that task, and nothing past its expiry.
UPDATE steering_events e
SET state = 'delivered', deliveries = e.deliveries + 1, delivered_run_id = $1,
    delivered_attempt = $2, delivered_claim = $3, delivered_at = now(), updated_at = now()
FROM ticket_agents a
JOIN runs r ON r.task_id = a.task_id
WHERE a.task_id = $4 AND a.state = 'assigned' AND e.agent_id = a.id
  AND r.id = $1 AND r.attempt = $2 AND r.claim_token_hash = $3
  AND r.status = 'running'
  AND e.expires_at > now()
  AND (e.state = 'pending'
       OR (e.state = 'delivered' AND e.delivered_claim IS DISTINCT FROM $3))
RETURNING e.id, e.agent_id, e.source, e.author, e.body, e.deliveries, e.created_at;

-- name: acknowledge_steering_if_holder
-- Acknowledges, for the agent whose latest task is $4, the events delivered to the claim
-- the fence ($1 run, $2 attempt, $3 token hash) still holds: those in $5, or every one
-- when $5 is NULL; `acknowledged_by` is $6.
UPDATE steering_events e
SET state = 'acknowledged', acknowledged_at = now(), acknowledged_by = $6, updated_at = now()
FROM ticket_agents a
JOIN runs r ON r.task_id = a.task_id
WHERE a.task_id = $4 AND e.agent_id = a.id
  AND r.id = $1 AND r.attempt = $2 AND r.claim_token_hash = $3
  AND r.status = 'running'
  AND e.state = 'delivered' AND e.delivered_claim = $3
  AND ($5::uuid[] IS NULL OR e.id = ANY($5::uuid[]))
RETURNING e.id;

-- name: acknowledge_steering_for_session
-- Acknowledges event $1 of agent $2 in tenant $3 for session $4, when it was delivered
-- to that session's current claim and the session is the agent's latest task's;
-- `acknowledged_by` is $5.
UPDATE steering_events e
SET state = 'acknowledged', acknowledged_at = now(), acknowledged_by = $5, updated_at = now()
FROM ticket_agents a, agent_sessions s
WHERE e.id = $1 AND e.agent_id = $2 AND e.tenant_id = $3 AND a.id = e.agent_id
  AND s.id = $4 AND s.task_id = a.task_id
  AND e.state = 'delivered' AND e.delivered_claim = s.claim_token_hash
RETURNING e.*, a.task_id;

-- name: steering_event_for_session
-- Event $1 of agent $2 in tenant $3 when the agent's latest task is session $4's; with
-- whether it was delivered to that session's current claim.
SELECT e.*, (e.delivered_claim = s.claim_token_hash) AS delivered_to_session
FROM steering_events e
JOIN ticket_agents a ON a.id = e.agent_id
JOIN agent_sessions s ON s.task_id = a.task_id
WHERE e.id = $1 AND e.agent_id = $2 AND e.tenant_id = $3 AND s.id = $4;

-- name: list_steering_events
-- Agent $2's steering events in tenant $1, newest first, at most $3.
SELECT * FROM steering_events
WHERE tenant_id = $1 AND agent_id = $2
ORDER BY created_at DESC, id DESC
LIMIT $3;

-- name: expire_overdue_steering
-- Closes agent $1's open events whose expiry has passed (`expired`, reason `ttl`);
-- returns them with the agent's latest task, for their trace events.
UPDATE steering_events e
SET state = 'expired', closed_reason = 'ttl', updated_at = now()
FROM ticket_agents a
WHERE e.agent_id = $1 AND a.id = e.agent_id
  AND e.state IN ('pending', 'delivered') AND e.expires_at <= now()
RETURNING e.id, a.task_id;

-- name: close_open_steering
-- Closes agent $1's open events as `expired` with reason $2: the agent was stopped or
-- unassigned, so nobody will read them.
UPDATE steering_events
SET state = 'expired', closed_reason = $2, updated_at = now()
WHERE agent_id = $1 AND state IN ('pending', 'delivered')
RETURNING id;

-- name: open_steering_of_agent
-- Agent $1's open events, oldest first, locked until the transaction ends.
SELECT id FROM steering_events
WHERE agent_id = $1 AND state IN ('pending', 'delivered')
ORDER BY created_at, id
FOR UPDATE;

-- name: copy_steering_to_agent
-- Copies the events $1 as new pending events $2 (pairwise) for agent $3, keeping their
-- note, author, body, expiry and time.
INSERT INTO steering_events (id, tenant_id, agent_id, ticket_id, note_id, source, author,
                             body, state, expires_at, created_at)
SELECT p.new_id, e.tenant_id, $3, e.ticket_id, e.note_id, e.source, e.author, e.body,
       'pending', e.expires_at, e.created_at
FROM unnest($1::uuid[], $2::uuid[]) AS p(old_id, new_id)
JOIN steering_events e ON e.id = p.old_id;

-- name: supersede_steering
-- Marks the open events $1 superseded by their copies $2 (pairwise): the agent restarted.
UPDATE steering_events e
SET state = 'superseded', superseded_by = p.new_id, closed_reason = 'agent_restarted',
    updated_at = now()
FROM unnest($1::uuid[], $2::uuid[]) AS p(old_id, new_id)
WHERE e.id = p.old_id AND e.state IN ('pending', 'delivered')
RETURNING e.id;
