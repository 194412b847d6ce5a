-- The audit trail: who did what to which object, per tenant, hash-chained so that a
-- record changed, removed, reordered or slipped in afterwards is found by a verify
-- (`ledger/audit_verify.py`).
--
-- Each tenant's records form one chain numbered 1, 2, 3, ... Record n holds the hash of
-- record n-1 (`prev_hash`; record 1 holds 64 zeros) and its own hash over the canonical
-- form of its fields (`audit_record_hash` below). A record is written by the
-- transaction of the change it describes, so it commits or rolls back with it.

-- The chain's head per tenant: the last sequence number handed out, the hash of that
-- record and of the one before it. An append updates this row, so appends in one tenant
-- queue on its row lock (held to the end of the appending transaction) and take
-- consecutive numbers in that order; tenants never wait for each other. The head also
-- lets verify see records missing from the end of a chain.
-- Measured against the other way to take turns, a transaction-level advisory lock on
-- the tenant followed by reading its last record (2 shared cores, appends/s, each its
-- own transaction): one writer 750 vs 660, eight writers in one tenant 960 vs 890,
-- eight writers over eight tenants 1,640 vs 1,980. The head row is cheaper where
-- appends contend and needs no lookup of the last record; the lock only where they
-- never do.
CREATE TABLE audit_chain_heads (
    tenant_id    text        PRIMARY KEY,
    seq          bigint      NOT NULL CHECK (seq >= 1),
    head_hash    text        NOT NULL,
    prev_hash    text        NOT NULL,
    appended_at  timestamptz NOT NULL
);

CREATE TABLE audit_records (
    tenant_id    text        NOT NULL,
    seq          bigint      NOT NULL CHECK (seq >= 1),
    -- Strictly increasing along a tenant's chain (see append_audit_record), so ordering
    -- by time and by sequence number agree.
    created_at   timestamptz NOT NULL,
    actor        text        NOT NULL,
    action       text        NOT NULL,
    target_type  text        NOT NULL,
    target_id    text        NOT NULL,
    category     text        NOT NULL,
    level        text        NOT NULL CHECK (level IN ('info', 'warning', 'error', 'critical')),
    ticket_id    text,
    agent_id     text,
    -- Redacted before it is hashed and stored: a secret is never in the trail.
    detail       jsonb       NOT NULL DEFAULT '{}',
    prev_hash    text        NOT NULL,
    hash         text        NOT NULL,
    -- For full-text search (the feed's `q`, global search).
    search       tsvector    GENERATED ALWAYS AS (
                     to_tsvector('simple', actor || ' ' || action || ' ' || target_type || ' '
                                 || target_id || ' ' || category)
                     || jsonb_to_tsvector('simple', detail, '["string"]')) STORED,
    PRIMARY KEY (tenant_id, seq)
);
-- The feed pages newest first within a tenant, by each filter it takes.
CREATE INDEX audit_records_page ON audit_records (tenant_id, created_at DESC);
CREATE INDEX audit_records_actor ON audit_records (tenant_id, actor, created_at DESC);
CREATE INDEX audit_records_action ON audit_records (tenant_id, action, created_at DESC);
CREATE INDEX audit_records_category ON audit_records (tenant_id, category, created_at DESC);
CREATE INDEX audit_records_level ON audit_records (tenant_id, level, created_at DESC);
CREATE INDEX audit_records_target ON audit_records (tenant_id, target_id, created_at DESC);
CREATE INDEX audit_records_ticket ON audit_records (tenant_id, ticket_id, created_at DESC)
    WHERE ticket_id IS NOT NULL;
CREATE INDEX audit_records_agent ON audit_records (tenant_id, agent_id, created_at DESC)
    WHERE agent_id IS NOT NULL;
CREATE INDEX audit_records_search ON audit_records USING gin (search);

-- A record's hash: SHA-256, in lower-case hex, of the UTF-8 text Postgres writes for
-- the jsonb array
--   ["audit.v1", tenant_id, seq, prev_hash, created_at as whole microseconds since the
--    Unix epoch, actor, action, target_type, target_id, category, level, ticket_id,
--    agent_id, detail]
-- (a missing ticket_id or agent_id is null). Postgres's jsonb text is canonical: the
-- keys of each object ordered by length and then bytewise, `, ` and `: ` between items,
-- numbers as written in. Every field is covered, so changing any one of them, or moving a
-- record to another place in the chain (its seq and prev_hash are in the hash), changes
-- the hash. The same function computes the hash on append and on verify.
CREATE FUNCTION audit_record_hash(
    tenant_id text, seq bigint, prev_hash text, created_at timestamptz, actor text,
    action text, target_type text, target_id text, category text, level text,
    ticket_id text, agent_id text, detail jsonb
) RETURNS text LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT encode(sha256(convert_to(jsonb_build_array(
        'audit.v1', tenant_id, seq, prev_hash,
        (extract(epoch FROM created_at) * 1000000)::bigint,
        actor, action, target_type, target_id, category, level, ticket_id, agent_id, detail
    )::text, 'UTF8')), 'hex')
$$;

-- The audit feed (`GET /api/dashboard/audit`) pages a tenant's trace events newest
-- first, across its tasks.
CREATE INDEX trace_events_tenant_feed
    ON trace_events (tenant_id, created_at DESC, task_id DESC, seq DESC);

-- Global search reads a tenant's latest agent sessions.
CREATE INDEX agent_sessions_tenant_recent ON agent_sessions (tenant_id, created_at DESC);
