-- Client-side agent sessions: the client drives the agent loop, one step at a time.
--
-- A session is a thread (its history is the thread's messages) plus this row. Every
-- step of it, an inference turn or a tool call, is a thread run: a governed task with
-- a verdict, a lane, a lease, retries and a trace, like any other. So the thread's
-- one-active-run index (migration 0009) also makes a session's steps sequential.

-- What a thread is for: a conversation with the agents (its runs are agent runs), or
-- a client-side session (its runs are the steps its client asks for, and nothing else
-- may start a run in it).
ALTER TABLE threads ADD COLUMN kind text NOT NULL DEFAULT 'conversation'
    CHECK (kind IN ('conversation', 'client_session'));

CREATE TABLE client_sessions (
    -- The session's thread: one id for both.
    thread_id      uuid PRIMARY KEY REFERENCES threads (id),
    tenant_id      text        NOT NULL,
    -- The subject that created it: only it may take steps in it or complete it.
    owner          text        NOT NULL,
    agent_type     text        NOT NULL,
    lane           text        NOT NULL,
    provider       text        NOT NULL,
    -- The model every inference turn must name, resolved at creation.
    model          text        NOT NULL,
    -- The lane's verdict for the provider at creation (a deny is refused, not stored).
    policy_verdict jsonb       NOT NULL,
    -- running: created, steps may be taken; completed: by its owner, terminal.
    status         text        NOT NULL DEFAULT 'running'
                   CHECK (status IN ('running', 'completed')),
    summary        text,
    confidence     double precision CHECK (confidence >= 0 AND confidence <= 1),
    created_at     timestamptz NOT NULL DEFAULT now(),
    completed_at   timestamptz,
    CONSTRAINT client_sessions_completed_at
        CHECK ((status = 'completed') = (completed_at IS NOT NULL))
);
CREATE INDEX client_sessions_tenant ON client_sessions (tenant_id, created_at DESC);
