-- The agent runtime on the task ledger: each claimed task's agent session (its identity,
-- lineage and credential), coordination channels with their messages, and each
-- session's read position in each channel.
--
-- A session is the identity of a task's runs: made at the task's first claim, bound to
-- each later claim of one of its runs (a release, a retry), so its lineage and its
-- channels' read positions outlive one lease. What it may do while bound lives in the
-- run: its credential works only while the run is held under the claim it was issued
-- with (`ledger/agent_sessions.py`).

CREATE TABLE agent_sessions (
    id                   uuid        PRIMARY KEY,
    tenant_id            text        NOT NULL,
    task_id              uuid        NOT NULL UNIQUE REFERENCES tasks (id),
    -- The run of the latest claim; NULL only for a spawned session not claimed yet.
    run_id               uuid        REFERENCES runs (id),
    name                 text        NOT NULL,
    -- `task`: claimed from a lane; `spawned`: made by another session's spawn.
    type                 text        NOT NULL CHECK (type IN ('task', 'spawned')),
    -- As last written. `active` is written at each claim; a session whose claim has
    -- ended (its run finished, released, reaped) reads as `starting` (waiting for the
    -- next claim) or `stopped` (its task finished) without a write: the run says so.
    -- `stopping` and `stopped` are written when a session is stopped on purpose.
    state                text        NOT NULL CHECK (state IN (
                             'starting', 'active', 'stopping', 'stopped')),
    stop_reason          text,
    agent_name           text        NOT NULL,
    model                text        NOT NULL,
    provider             text        NOT NULL,
    -- The workspace: the lane the task runs in.
    lane                 text        NOT NULL,
    parent_session_id    uuid        REFERENCES agent_sessions (id),
    root_session_id      uuid        NOT NULL,
    spawn_depth          integer     NOT NULL DEFAULT 0 CHECK (spawn_depth >= 0),
    spawn_role           text,
    ttl_expires_at       timestamptz,
    auto_stop_on_parent  boolean     NOT NULL DEFAULT false,
    -- {max_children, max_depth, max_active_per_workspace, ttl_seconds}
    spawn_budget         jsonb       NOT NULL,
    -- {tools, skills, mcp_servers, network_channels, sandbox_profiles, workspace_paths}
    permission_policy    jsonb       NOT NULL,
    -- sha256 of the credential the latest claim returned (shown once, never stored),
    -- and of that claim's token.
    credential_hash      text        UNIQUE,
    claim_token_hash     text,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX agent_sessions_run ON agent_sessions (run_id);
CREATE INDEX agent_sessions_children
    ON agent_sessions (parent_session_id) WHERE parent_session_id IS NOT NULL;
CREATE INDEX agent_sessions_tree ON agent_sessions (root_session_id);

-- A conversation place: one per task run (made with the run's first claim), and the
-- named channels a workspace (lane) declares in the lanes file, made in a tenant when a
-- session there first needs them. Messages are numbered per channel, like a thread's.
CREATE TABLE coordination_channels (
    id                     uuid        PRIMARY KEY,
    tenant_id              text        NOT NULL,
    workspace              text        NOT NULL,
    name                   text        NOT NULL,
    display_name           text        NOT NULL,
    purpose                text        NOT NULL,
    allowed_message_kinds  text[]      NOT NULL,
    -- A run's channel: its run and task, and the session tree that sees it.
    run_id                 uuid        UNIQUE REFERENCES runs (id),
    task_id                uuid        REFERENCES tasks (id),
    root_session_id        uuid,
    -- The last message sequence number handed out; each message takes the next one in
    -- the transaction that writes it.
    message_count          integer     NOT NULL DEFAULT 0,
    last_activity_at       timestamptz,
    created_at             timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, workspace, name)
);
CREATE INDEX coordination_channels_tree
    ON coordination_channels (root_session_id) WHERE root_session_id IS NOT NULL;

-- Bodies are stored redacted: a secret sent in a message is not in the ledger at all.
CREATE TABLE channel_messages (
    channel_id           uuid        NOT NULL REFERENCES coordination_channels (id),
    seq                  integer     NOT NULL,
    id                   uuid        NOT NULL UNIQUE,
    tenant_id            text        NOT NULL,
    from_session_id      uuid        NOT NULL REFERENCES agent_sessions (id),
    -- A reply goes to the sender of the message it answers; NULL: to everyone.
    to_session_id        uuid        REFERENCES agent_sessions (id),
    reply_to_message_id  uuid,
    message_kind         text        NOT NULL,
    correlation_id       text        NOT NULL,
    run_id               uuid,
    task_id              uuid,
    workflow_id          text,
    ext                  jsonb       NOT NULL DEFAULT '{}',
    body                 jsonb       NOT NULL,
    created_at           timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (channel_id, seq)
);

-- How far each session has read each channel: `recv` returns what follows and moves it.
CREATE TABLE channel_reads (
    session_id  uuid        NOT NULL REFERENCES agent_sessions (id),
    channel_id  uuid        NOT NULL REFERENCES coordination_channels (id),
    read_seq    integer     NOT NULL DEFAULT 0,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (session_id, channel_id)
);

-- Long-polling `recv`: tell API replicas (and workers) that a channel has a new message.
-- One notification per channel per transaction (Postgres folds identical ones), from
-- whichever replica wrote it; receivers then read what is new from the table.
CREATE FUNCTION notify_channel_message() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('workbench_channels', NEW.channel_id::text);
    RETURN NULL;
END $$;

CREATE TRIGGER channel_messages_notify
    AFTER INSERT ON channel_messages
    FOR EACH ROW EXECUTE FUNCTION notify_channel_message();

-- The spawned sessions the session reaper looks at: the ones not stopped yet. Sessions
-- claimed from a lane are stopped by their run, never written so, and are not here.
CREATE INDEX agent_sessions_live_spawned ON agent_sessions (created_at)
    WHERE type = 'spawned' AND state NOT IN ('stopping', 'stopped');
