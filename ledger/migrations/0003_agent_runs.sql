-- Agent execution: SDK spans in the trace, runs paused for a tool approval with their
-- saved SDK state, token usage per run.

-- The SDK span an event came from; a resumed run re-sends nothing twice.
ALTER TABLE trace_events ADD COLUMN span_id text;
CREATE UNIQUE INDEX trace_events_span ON trace_events (task_id, span_id)
    WHERE span_id IS NOT NULL;

-- paused: the agent stopped at a tool call that needs approval; the approve/reject
-- decision queues the same run again (no attempt is spent) and it resumes from
-- saved_state, the SDK's RunState serialised by RunState.to_string().
ALTER TABLE runs DROP CONSTRAINT runs_status_check;
ALTER TABLE runs ADD CONSTRAINT runs_status_check CHECK (status IN (
    'queued', 'dispatched', 'running', 'paused', 'blocked', 'succeeded', 'failed',
    'cancelled', 'lost'));
ALTER TABLE runs ADD COLUMN saved_state text;
ALTER TABLE runs ADD COLUMN input_tokens bigint NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN output_tokens bigint NOT NULL DEFAULT 0;

-- The tool call waiting for an operator: tool, redacted arguments, and the sha256 of
-- the exact arguments the decision is bound to; the decision once taken.
ALTER TABLE tasks ADD COLUMN pending_approval jsonb;
