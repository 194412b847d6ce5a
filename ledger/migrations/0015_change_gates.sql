-- Change requests (gates an agent or a person asks to pass before acting on a target)
-- and access requests (a permission wall hit while working a ticket: a child ticket for
-- the owning group, and a change gate that decides the grant).
--
-- A ticket's status is one of the ticket workflow's (`ledger/ticket_workflow.py`), for
-- every class.
ALTER TABLE tickets ADD CONSTRAINT tickets_status_check CHECK (status IN (
    'new', 'assigned', 'in_progress', 'on_hold', 'awaiting_approval',
    'awaiting_user_response', 'resolved', 'closed', 'cancelled'));

-- A change's status (`ledger/changes.py` says who moves it out of each):
--   pending    requested; waiting for its approvals until expires_at
--   approved   enough distinct approvers allowed it (never its requester)
--   rejected   an approver refused it
--   expired    not decided by expires_at (the dispatcher's sweeper, or the first
--              decision attempted after it)
--   completed  the approved action was carried out and its result recorded
CREATE TABLE change_requests (
    id                  uuid        PRIMARY KEY,
    tenant_id           text        NOT NULL,
    ticket_id           uuid        NOT NULL REFERENCES tickets (id),
    agent_id            uuid,
    action              text        NOT NULL,
    target              text        NOT NULL,
    reason              text        NOT NULL DEFAULT '',
    command             text        NOT NULL DEFAULT '',
    risk_level          text        NOT NULL CHECK (risk_level IN (
                            'low', 'medium', 'high', 'critical')),
    approval_policy     jsonb       NOT NULL DEFAULT '{}',
    status              text        NOT NULL CHECK (status IN (
                            'pending', 'approved', 'rejected', 'expired', 'completed')),
    requested_by        text        NOT NULL,
    -- The lanes file's rule for the risk level when requested, and its version.
    approver_roles      text[]      NOT NULL,
    approvals_required  integer     NOT NULL CHECK (approvals_required >= 1),
    policy_version      text        NOT NULL,
    -- [{by, role, reason, at}], one per distinct approver.
    approvals           jsonb       NOT NULL DEFAULT '[]',
    decided_by          text,
    decision_reason     text,
    decided_at          timestamptz,
    completed_by        text,
    result              text,
    completed_at        timestamptz,
    expires_at          timestamptz NOT NULL,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX change_requests_page ON change_requests (tenant_id, created_at DESC, id DESC);
CREATE INDEX change_requests_ticket ON change_requests (ticket_id, created_at);
CREATE INDEX change_requests_agent ON change_requests (agent_id) WHERE agent_id IS NOT NULL;
-- The sweeper's and the pending list's walk.
CREATE INDEX change_requests_pending ON change_requests (expires_at) WHERE status = 'pending';

CREATE TABLE access_requests (
    id                uuid        PRIMARY KEY,
    tenant_id         text        NOT NULL,
    -- The ticket whose work hit the wall, and the child ticket raised for the group.
    ticket_id         uuid        NOT NULL REFERENCES tickets (id),
    child_ticket_id   uuid        NOT NULL REFERENCES tickets (id),
    change_id         uuid        NOT NULL UNIQUE REFERENCES change_requests (id),
    agent_id          uuid,
    resource          text        NOT NULL,
    permission        text        NOT NULL,
    account_ref       text,
    assignment_group  text        NOT NULL,
    reason            text        NOT NULL DEFAULT '',
    requested_by      text        NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX access_requests_ticket ON access_requests (ticket_id, created_at);
CREATE INDEX access_requests_child ON access_requests (child_ticket_id);

-- Change requests as they stand now: a pending change past its expiry reads as expired
-- before the sweeper has written it so; every read goes through this view.
CREATE VIEW change_requests_now AS
SELECT id, tenant_id, ticket_id, agent_id, action, target, reason, command, risk_level,
       approval_policy,
       CASE WHEN status = 'pending' AND expires_at <= now() THEN 'expired' ELSE status END
           AS status,
       requested_by, approver_roles, approvals_required, policy_version, approvals,
       decided_by, decision_reason, decided_at, completed_by, result, completed_at,
       expires_at, created_at, updated_at
FROM change_requests;
