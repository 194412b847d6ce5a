-- name: insert_change_request
-- Records a change request, pending until its approvals or its expiry.
INSERT INTO change_requests (id, tenant_id, ticket_id, agent_id, action, target, reason,
                             command, risk_level, approval_policy, status, requested_by,
                             approver_roles, approvals_required, policy_version, expires_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'pending', $11, $12, $13, $14,
        now() + make_interval(secs => $15))
RETURNING *;

-- name: get_change
-- One change request of a tenant, as it stands now.
SELECT * FROM change_requests_now WHERE tenant_id = $1 AND id = $2;

-- name: list_changes
-- A tenant's change requests newest first, each filter applied when given.
SELECT * FROM change_requests_now
WHERE tenant_id = $1
  AND ($2::text IS NULL OR status = $2)
  AND ($3::uuid IS NULL OR agent_id = $3)
  AND ($4::uuid IS NULL OR ticket_id = $4)
  AND ($5::text IS NULL OR risk_level = $5)
ORDER BY created_at DESC, id DESC
LIMIT $6 OFFSET $7;

-- name: pending_changes
-- A tenant's changes still waiting for a decision, the soonest to expire first.
SELECT * FROM change_requests
WHERE tenant_id = $1 AND status = 'pending' AND expires_at > now()
ORDER BY expires_at, id
LIMIT $2;

-- name: change_stats
-- A tenant's change requests counted by status and risk level, as they stand now.
SELECT status, risk_level, count(*) AS count
FROM change_requests_now
WHERE tenant_id = $1
GROUP BY status, risk_level;

-- name: ticket_changes
-- A ticket's change requests, oldest first.
SELECT * FROM change_requests_now WHERE tenant_id = $1 AND ticket_id = $2
ORDER BY created_at, id;

-- name: approve_change
-- Adds one approver ($3, not yet among them) to a pending change not past its expiry;
-- the change is approved once it has as many as its rule requires.
UPDATE change_requests
SET approvals = approvals || jsonb_build_array($4::jsonb || jsonb_build_object('at', now())),
    status = CASE WHEN jsonb_array_length(approvals) + 1 >= approvals_required
                  THEN 'approved' ELSE 'pending' END,
    decided_by = CASE WHEN jsonb_array_length(approvals) + 1 >= approvals_required
                      THEN $3 END,
    decision_reason = CASE WHEN jsonb_array_length(approvals) + 1 >= approvals_required
                           THEN $5 END,
    decided_at = CASE WHEN jsonb_array_length(approvals) + 1 >= approvals_required
                      THEN now() END,
    updated_at = now()
WHERE tenant_id = $1 AND id = $2 AND status = 'pending' AND expires_at > now()
  AND NOT approvals @> jsonb_build_array(jsonb_build_object('by', $3::text))
RETURNING *;

-- name: reject_change
-- A pending change not past its expiry is refused.
UPDATE change_requests
SET status = 'rejected', decided_by = $3, decision_reason = $4, decided_at = now(),
    updated_at = now()
WHERE tenant_id = $1 AND id = $2 AND status = 'pending' AND expires_at > now()
RETURNING *;

-- name: complete_change
-- An approved change was carried out: its result is recorded.
UPDATE change_requests
SET status = 'completed', completed_by = $3, result = $4, completed_at = now(),
    updated_at = now()
WHERE tenant_id = $1 AND id = $2 AND status = 'approved'
RETURNING *;

-- name: expire_change
-- A pending change past its expiry is written expired (by the sweeper, or by the first
-- decision attempted after it).
UPDATE change_requests
SET status = 'expired', updated_at = now()
WHERE tenant_id = $1 AND id = $2 AND status = 'pending' AND expires_at <= now()
RETURNING *;

-- name: changes_due_to_expire
-- Pending changes past their expiry, oldest expiry first, for the sweeper.
SELECT tenant_id, id FROM change_requests
WHERE status = 'pending' AND expires_at <= now()
ORDER BY expires_at
LIMIT $1;

-- name: insert_access_request
-- Records an access request with its child ticket and change gate.
INSERT INTO access_requests (id, tenant_id, ticket_id, child_ticket_id, change_id, agent_id,
                             resource, permission, account_ref, assignment_group, reason,
                             requested_by)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
RETURNING id;

-- name: ticket_access_requests
-- Access requests raised for a ticket or whose child ticket it is, with their gate's
-- status (approved or completed: granted) and their child ticket's.
SELECT a.*, c.status AS change_status, child.status AS child_ticket_status,
       CASE WHEN c.status IN ('approved', 'completed') THEN 'granted' ELSE c.status END
           AS grant_status
FROM access_requests a
JOIN change_requests_now c ON c.id = a.change_id
JOIN tickets child ON child.id = a.child_ticket_id
WHERE a.tenant_id = $1 AND (a.ticket_id = $2 OR a.child_ticket_id = $2)
ORDER BY a.created_at, a.id;

-- name: access_request_for_change
-- The access request a change gate decides, if it is one's.
SELECT * FROM access_requests WHERE tenant_id = $1 AND change_id = $2;

-- name: get_access_request
-- One access request with its gate's and its child ticket's status.
SELECT a.*, c.status AS change_status, child.status AS child_ticket_status,
       CASE WHEN c.status IN ('approved', 'completed') THEN 'granted' ELSE c.status END
           AS grant_status
FROM access_requests a
JOIN change_requests_now c ON c.id = a.change_id
JOIN tickets child ON child.id = a.child_ticket_id
WHERE a.tenant_id = $1 AND a.id = $2;

-- name: approved_change_for_target
-- The latest approved (not yet completed) change of an agent on a ticket for a target:
-- what lets the agent's write to that target proceed.
SELECT * FROM change_requests
WHERE tenant_id = $1 AND ticket_id = $2 AND agent_id = $3 AND target = $4
  AND status = 'approved'
ORDER BY decided_at DESC
LIMIT 1;

-- name: agent_change_for_target
-- The latest change agent $3 asked for on ticket $2, to do $4 on target $5, unless it
-- expired (as it stands now): asked for again, it is this one.
SELECT * FROM change_requests_now
WHERE tenant_id = $1 AND ticket_id = $2 AND agent_id = $3 AND action = $4 AND target = $5
  AND status IN ('pending', 'approved', 'rejected', 'completed')
ORDER BY created_at DESC
LIMIT 1;

-- name: agent_assigned_by
-- Who put agent $2 on its ticket (or restarted it): the person its changes are for.
SELECT created_by FROM ticket_agents WHERE tenant_id = $1 AND id = $2;
