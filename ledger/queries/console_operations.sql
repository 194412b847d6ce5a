-- The operator console's reads of the operations data (`ledger/operations_overview.py`):
-- change requests pending first, and a ticket's steering events. Each is scoped to one
-- tenant and reads as the API's own reads do: a change through `change_requests_now`,
-- a steering event past its time to live as expired before the listing writes it so.

-- name: console_changes
-- Tenant $1's change requests as they stand now, the ones in status $6 (waiting for a
-- decision) first, the soonest to expire first, then the rest newest first; status $2
-- and risk level $3 when given; at most $4 after $5.
SELECT * FROM change_requests_now
WHERE tenant_id = $1
  AND ($2::text IS NULL OR status = $2)
  AND ($3::text IS NULL OR risk_level = $3)
ORDER BY (status = $6) DESC,
         CASE WHEN status = $6 THEN expires_at END,
         created_at DESC, id DESC
LIMIT $4 OFFSET $5;

-- name: console_ticket_steering
-- The steering events of ticket $2's agents in tenant $1, newest first, at most $3; an
-- open event past its expiry reads as expired (reason ttl).
SELECT e.id, e.agent_id, e.ticket_id, e.note_id, e.source, e.author, e.body,
       CASE WHEN e.state IN ('pending', 'delivered') AND e.expires_at <= now()
            THEN 'expired' ELSE e.state END AS state,
       e.expires_at, e.deliveries, e.delivered_run_id, e.delivered_attempt,
       e.delivered_at, e.acknowledged_at, e.acknowledged_by, e.superseded_by,
       CASE WHEN e.state IN ('pending', 'delivered') AND e.expires_at <= now()
            THEN 'ttl' ELSE e.closed_reason END AS closed_reason,
       e.created_at, e.updated_at
FROM steering_events e
WHERE e.tenant_id = $1 AND e.ticket_id = $2
ORDER BY e.created_at DESC, e.id DESC
LIMIT $3;

-- name: console_audit_record
-- Tenant $1's audit record $2 as stored (where a verify found the chain broken).
SELECT seq, created_at, actor, action, target_type, target_id, category, level,
       ticket_id, agent_id, detail, prev_hash, hash
FROM audit_records
WHERE tenant_id = $1 AND seq = $2;

-- name: console_ticket_agent
-- Agent $2 of tenant $1 as its assignment was recorded (never its prompt's full text).
SELECT id, state, stop_reason, lane, model_provider, model, profile, created_by,
       replaces_agent_id, created_at, stopped_at
FROM ticket_agents
WHERE tenant_id = $1 AND id = $2;
