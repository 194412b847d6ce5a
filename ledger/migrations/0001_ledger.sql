-- The task ledger: tasks, runs (one per attempt), append-only trace events,
-- artifact metadata and registered IT requests. Every row carries its tenant.

CREATE TABLE tasks (
    id               uuid PRIMARY KEY,
    tenant_id        text        NOT NULL,
    lane             text        NOT NULL,
    title            text        NOT NULL,
    instructions     text        NOT NULL,
    source_systems   text[]      NOT NULL DEFAULT '{}',
    scope            jsonb       NOT NULL DEFAULT '{}',
    mutation_level   text        NOT NULL,
    model_provider   text        NOT NULL,
    status           text        NOT NULL CHECK (status IN (
                         'awaiting_approval', 'denied', 'queued', 'dispatched', 'running',
                         'blocked', 'succeeded', 'failed', 'cancelled', 'rollback_requested')),
    policy_verdict   jsonb       NOT NULL,
    break_glass      jsonb,
    approval         jsonb,
    rollback         jsonb,
    terminal_reason  text,
    current_run_id   uuid,
    attempt          integer     NOT NULL DEFAULT 0,
    max_attempts     integer     NOT NULL,
    -- The last trace sequence number handed out; each trace event takes the next one
    -- in the same transaction that changes the task.
    trace_seq        integer     NOT NULL DEFAULT 0,
    created_by       text        NOT NULL,
    idempotency_key  text,
    request_hash     text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);

-- Keyset pagination walks (created_at, id) newest first, optionally filtered.
CREATE INDEX tasks_tenant_page ON tasks (tenant_id, created_at DESC, id DESC);
CREATE INDEX tasks_tenant_status_page ON tasks (tenant_id, status, created_at DESC, id DESC);
CREATE INDEX tasks_tenant_lane_page ON tasks (tenant_id, lane, created_at DESC, id DESC);
CREATE UNIQUE INDEX tasks_idempotency ON tasks (tenant_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

CREATE TABLE runs (
    id                uuid PRIMARY KEY,
    task_id           uuid        NOT NULL REFERENCES tasks (id),
    tenant_id         text        NOT NULL,
    lane              text        NOT NULL,
    attempt           integer     NOT NULL,
    status            text        NOT NULL CHECK (status IN (
                          'queued', 'dispatched', 'running', 'blocked', 'succeeded', 'failed',
                          'cancelled', 'lost')),
    previous_run_id   uuid REFERENCES runs (id),
    available_at      timestamptz NOT NULL DEFAULT now(),
    claimed_by        text,
    claim_token_hash  text,
    lease_until       timestamptz,
    heartbeat_at      timestamptz,
    failure_kind      text,
    error             text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    started_at        timestamptz,
    finished_at       timestamptz,
    UNIQUE (task_id, attempt)
);

ALTER TABLE tasks ADD CONSTRAINT tasks_current_run_fk
    FOREIGN KEY (current_run_id) REFERENCES runs (id) DEFERRABLE INITIALLY DEFERRED;

CREATE TABLE trace_events (
    task_id     uuid        NOT NULL REFERENCES tasks (id),
    seq         integer     NOT NULL,
    tenant_id   text        NOT NULL,
    run_id      uuid,
    kind        text        NOT NULL,
    from_status text,
    to_status   text,
    actor       text        NOT NULL,
    message     text        NOT NULL DEFAULT '',
    data        jsonb       NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (task_id, seq)
);

CREATE TABLE artifacts (
    id           uuid PRIMARY KEY,
    task_id      uuid        NOT NULL REFERENCES tasks (id),
    run_id       uuid REFERENCES runs (id),
    tenant_id    text        NOT NULL,
    name         text        NOT NULL,
    media_type   text        NOT NULL,
    storage_ref  text        NOT NULL,
    sha256       text        NOT NULL,
    size_bytes   bigint      NOT NULL,
    metadata     jsonb       NOT NULL DEFAULT '{}',
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX artifacts_task ON artifacts (task_id, created_at);

CREATE TABLE it_requests (
    tenant_id       text        NOT NULL,
    request_number  text        NOT NULL,
    title           text        NOT NULL,
    description     text        NOT NULL DEFAULT '',
    requester       text        NOT NULL DEFAULT '',
    source_system   text,
    details         jsonb       NOT NULL DEFAULT '{}',
    created_by      text        NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, request_number)
);
