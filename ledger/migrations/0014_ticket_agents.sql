-- Agents on tickets, the steering notes people send them while they work, and each
-- tenant's agent runtime settings.
--
-- A ticket agent is one assignment of an agent to a ticket: the governed task made for
-- it through the policy, and the later tasks its wake or a requester's answer makes
-- when none is active. Its id is what /api/agents/{id} names, what a ticket's
-- `agent_id` holds, and what steering events are addressed to. A restart ends the
-- assignment and makes a new one (a new id) that replaces it.

CREATE TABLE ticket_agents (
    id                 uuid        PRIMARY KEY,
    tenant_id          text        NOT NULL,
    ticket_id          uuid        NOT NULL REFERENCES tickets (id),
    -- The agent's latest task: the one steering reaches, the one stop cancels.
    task_id            uuid        NOT NULL REFERENCES tasks (id),
    -- `assigned` from assign-agent (or a restart's replacement) until unassign, stop
    -- or restart write `stopped`. Whether it is working right now is its task's status.
    state              text        NOT NULL CHECK (state IN ('assigned', 'stopped')),
    stop_reason        text,
    lane               text        NOT NULL,
    model_provider     text        NOT NULL,
    model              text,
    profile            text,
    prompt             text        NOT NULL,
    created_by         text        NOT NULL,
    replaces_agent_id  uuid        REFERENCES ticket_agents (id),
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    stopped_at         timestamptz
);
-- A ticket has at most one assigned agent at a time.
CREATE UNIQUE INDEX ticket_agents_one_assigned
    ON ticket_agents (ticket_id) WHERE state = 'assigned';
CREATE INDEX ticket_agents_task ON ticket_agents (task_id);
CREATE INDEX ticket_agents_page ON ticket_agents (tenant_id, created_at DESC, id DESC);

-- Every task an agent has had, in order (the first, and each wake's or resume's).
CREATE TABLE ticket_agent_tasks (
    agent_id    uuid        NOT NULL REFERENCES ticket_agents (id),
    task_id     uuid        NOT NULL UNIQUE REFERENCES tasks (id),
    tenant_id   text        NOT NULL,
    reason      text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (agent_id, task_id)
);

-- A steering event: a note for a working agent, delivered at its next model turn
-- without interrupting it, at least once, until the agent acknowledges it.
--
-- state, and who moves an event out of it:
--   pending       written with the note. The worker running the agent's task moves it
--                 to `delivered` at the run's next model call; stop, unassign and
--                 expiry close it; a restart supersedes it.
--   delivered     placed in the model input of the claim `delivered_claim` names (its
--                 run and attempt in delivered_run_id, delivered_attempt). The agent
--                 acknowledges it; a later claim that finds it unacknowledged (the
--                 attempt crashed or ended first) delivers it again, once per claim;
--                 stop, expiry and restart close it as from `pending`.
--   acknowledged  terminal: the agent said it took it into account.
--   superseded    terminal: its agent was restarted, and a copy addressed to the
--                 replacement (superseded_by) carries it on.
--   expired       terminal: not acknowledged by expires_at, or its agent was stopped
--                 or unassigned (closed_reason says which).
-- Bodies are stored redacted.
CREATE TABLE steering_events (
    id                 uuid        PRIMARY KEY,
    tenant_id          text        NOT NULL,
    agent_id           uuid        NOT NULL REFERENCES ticket_agents (id),
    ticket_id          uuid        NOT NULL REFERENCES tickets (id),
    note_id            uuid,
    source             text        NOT NULL,
    author             text        NOT NULL,
    body               text        NOT NULL,
    state              text        NOT NULL CHECK (state IN (
                           'pending', 'delivered', 'acknowledged', 'superseded', 'expired')),
    expires_at         timestamptz NOT NULL,
    deliveries         integer     NOT NULL DEFAULT 0,
    delivered_run_id   uuid,
    delivered_attempt  integer,
    -- sha256 of the claim token of the claim it was last delivered to (never shown).
    delivered_claim    text,
    delivered_at       timestamptz,
    acknowledged_at    timestamptz,
    acknowledged_by    text,
    superseded_by      uuid        REFERENCES steering_events (id),
    closed_reason      text,
    created_at         timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX steering_events_open
    ON steering_events (agent_id, created_at) WHERE state IN ('pending', 'delivered');
CREATE INDEX steering_events_agent ON steering_events (agent_id, created_at DESC, id DESC);
CREATE INDEX steering_events_expiring
    ON steering_events (expires_at) WHERE state IN ('pending', 'delivered');

-- A tenant's editable agent runtime settings (profiles, route assignments, limits,
-- defaults); never a secret: the API refuses one before it gets here.
CREATE TABLE agent_runtime_settings (
    tenant_id   text        PRIMARY KEY,
    settings    jsonb       NOT NULL,
    updated_by  text        NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
