-- Tickets on the ledger: the canonical record of an IT request or incident, its notes
-- (the timeline: people, providers, agents and the control plane write to it), its
-- attachments' metadata, and the tasks worked for it. The statuses a ticket may take
-- depend on its class (`ledger/ticket_workflow.py`); the database only keeps them text.

CREATE TABLE tickets (
    id                    uuid        PRIMARY KEY,
    tenant_id             text        NOT NULL,
    title                 text        NOT NULL,
    description           text        NOT NULL DEFAULT '',
    ticket_class          text        NOT NULL,
    status                text        NOT NULL,
    -- The status before the latest change: what a user's response restores after a
    -- request for information (awaiting_user_response).
    previous_status       text,
    priority              smallint    NOT NULL CHECK (priority BETWEEN 1 AND 4),
    created_by            text        NOT NULL,
    assignee              text,
    assignee_team         text,
    owning_group          text,
    -- A child ticket (an access request's) points at the ticket it was raised for.
    parent_ticket_id      uuid        REFERENCES tickets (id),
    -- The IT request it was registered as, when it came through /api/it-requests.
    it_request_number     text,
    -- Where the ticket lives besides this ledger (`ledger/providers.py`).
    provider              text        NOT NULL DEFAULT 'local',
    provider_ref          text,
    provider_sync_status  text        NOT NULL DEFAULT 'local_only',
    external_url          text,
    -- The agent currently working the ticket and its current task (NULL when none);
    -- written by the agent lifecycle, read by the ticket's detail and list.
    agent_id              uuid,
    agent_task_id         uuid        REFERENCES tasks (id),
    details               jsonb       NOT NULL DEFAULT '{}',
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX tickets_page ON tickets (tenant_id, created_at DESC, id DESC);
CREATE INDEX tickets_status_page ON tickets (tenant_id, status, created_at DESC, id DESC);
CREATE INDEX tickets_children ON tickets (parent_ticket_id) WHERE parent_ticket_id IS NOT NULL;
CREATE UNIQUE INDEX tickets_it_request
    ON tickets (tenant_id, it_request_number) WHERE it_request_number IS NOT NULL;

-- The timeline. `source` says who wrote it (dashboard, requester, provider, agent,
-- system, ...), `kind` what it records (a plain note, a status change, an assignment,
-- a change gate's step, ...); `visibility` public notes are the ones a requester sees.
CREATE TABLE ticket_notes (
    id          uuid        PRIMARY KEY,
    tenant_id   text        NOT NULL,
    ticket_id   uuid        NOT NULL REFERENCES tickets (id),
    kind        text        NOT NULL DEFAULT 'note',
    body        text        NOT NULL,
    author      text        NOT NULL,
    source      text        NOT NULL,
    visibility  text        NOT NULL CHECK (visibility IN ('internal', 'public')),
    data        jsonb       NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX ticket_notes_ticket ON ticket_notes (ticket_id, created_at, id);
CREATE INDEX ticket_notes_page ON ticket_notes (tenant_id, created_at DESC);

-- Metadata only: the content is stored elsewhere, `storage_ref` says where.
CREATE TABLE ticket_attachments (
    id            uuid        PRIMARY KEY,
    tenant_id     text        NOT NULL,
    ticket_id     uuid        NOT NULL REFERENCES tickets (id),
    filename      text        NOT NULL,
    content_type  text        NOT NULL,
    size_bytes    bigint      NOT NULL CHECK (size_bytes >= 0),
    storage_ref   text        NOT NULL,
    sha256        text,
    uploaded_by   text        NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ticket_attachments_ticket ON ticket_attachments (ticket_id, created_at);

-- The tasks worked for a ticket (an agent's, one created from its IT request).
CREATE TABLE ticket_tasks (
    ticket_id   uuid        NOT NULL REFERENCES tickets (id),
    task_id     uuid        NOT NULL REFERENCES tasks (id),
    tenant_id   text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (ticket_id, task_id)
);
CREATE INDEX ticket_tasks_task ON ticket_tasks (task_id);

-- Every IT request registered before tickets existed becomes one.
INSERT INTO tickets (id, tenant_id, title, description, ticket_class, status, priority,
                     created_by, it_request_number, provider_ref, details, created_at,
                     updated_at)
SELECT gen_random_uuid(), tenant_id, title, description, 'UserRequest', 'new', 3,
       created_by, request_number, request_number,
       jsonb_build_object('requester', requester, 'source_system', source_system,
                          'it_request', details),
       created_at, created_at
FROM it_requests;
