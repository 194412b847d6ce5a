-- Conversations on the task ledger: threads with their messages, thread runs (tasks
-- that belong to a thread), and approval requests for tool calls.
--
-- A thread run is a task: it gets a verdict, a lane, runs under a lease and is traced
-- like any other, so everything already guaranteed for tasks holds for a turn of a
-- conversation. Its steps are not stored: they are read from its trace events.

CREATE TABLE threads (
    id             uuid PRIMARY KEY,
    tenant_id      text        NOT NULL,
    -- The name a client gives the conversation: the seed's `session_id` for process
    -- message, the thread id itself for threads created directly.
    session_key    text        NOT NULL,
    agent_type     text        NOT NULL,
    title          text        NOT NULL DEFAULT '',
    metadata       jsonb       NOT NULL DEFAULT '{}',
    created_by     text        NOT NULL,
    -- The last message sequence number handed out; each message takes the next one in
    -- the transaction that writes it.
    message_count  integer     NOT NULL DEFAULT 0,
    last_task_id   uuid,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, session_key)
);
CREATE INDEX threads_tenant_recent ON threads (tenant_id, updated_at DESC, id DESC);
CREATE INDEX threads_tenant_type_recent
    ON threads (tenant_id, agent_type, updated_at DESC, id DESC);

-- The history: what the user said, and what the agents said and did, in order. A run's
-- user message is written with the run; the agents' messages with the run's completion,
-- in the same fenced transaction, so a run retried after a crash writes them once.
CREATE TABLE thread_messages (
    thread_id   uuid        NOT NULL REFERENCES threads (id),
    seq         integer     NOT NULL,
    tenant_id   text        NOT NULL,
    task_id     uuid        NOT NULL REFERENCES tasks (id),
    role        text        NOT NULL CHECK (role IN (
                    'user', 'assistant', 'tool_call', 'tool_result', 'handoff')),
    agent       text,
    content     text        NOT NULL DEFAULT '',
    data        jsonb       NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (thread_id, seq)
);
CREATE INDEX thread_messages_task ON thread_messages (task_id, seq);

ALTER TABLE tasks ADD COLUMN thread_id uuid REFERENCES threads (id);
ALTER TABLE tasks ADD COLUMN agent_type text;
-- The caller's agent_config for the run (provider, model, temperature, tools_enabled),
-- as checked against the lane's policy.
ALTER TABLE tasks ADD COLUMN run_options jsonb;
CREATE INDEX tasks_thread ON tasks (thread_id, created_at) WHERE thread_id IS NOT NULL;
-- One run at a time per thread: a second one while one is still on its way (queued,
-- dispatched, running: phase 'active') or waiting for a decision is refused. Keyed on
-- phase, not status, so dispatch and claim stay HOT updates (migration 0008).
CREATE UNIQUE INDEX tasks_one_active_run_per_thread ON tasks (thread_id)
    WHERE thread_id IS NOT NULL AND phase IN ('active', 'awaiting_approval');

-- A tool call above its lane's tool_approval_above, waiting for a decision: written
-- with the pause, resolved by an operator, cancelled with its task. Bound to the exact
-- arguments by their sha256; `arguments` is what an operator may see (redacted).
CREATE TABLE approval_requests (
    id                uuid PRIMARY KEY,
    tenant_id         text        NOT NULL,
    task_id           uuid        NOT NULL REFERENCES tasks (id),
    run_id            uuid        NOT NULL REFERENCES runs (id),
    call_id           text        NOT NULL,
    tool              text        NOT NULL,
    arguments         jsonb       NOT NULL,
    arguments_sha256  text        NOT NULL,
    -- The roles that may decide it.
    deciders          text[]      NOT NULL,
    status            text        NOT NULL DEFAULT 'pending' CHECK (status IN (
                          'pending', 'approved', 'rejected', 'cancelled')),
    reason            text,
    resolved_by       text,
    resolved_at       timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (run_id, call_id)
);
CREATE INDEX approval_requests_pending
    ON approval_requests (tenant_id, created_at) WHERE status = 'pending';
CREATE INDEX approval_requests_task ON approval_requests (task_id, created_at);
