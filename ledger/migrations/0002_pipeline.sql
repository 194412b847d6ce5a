-- The worker-first pipeline: Postgres lane messages, dead letters, and what the
-- dispatcher and reaper need on runs.

-- How many times the run was sent to its lane. The first message's id is the run id
-- (Service Bus duplicate detection drops a second copy); a re-send after the dispatch
-- timeout uses "<run id>/<n>" so it is not dropped as a duplicate of a lost message.
ALTER TABLE runs ADD COLUMN dispatch_count integer NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN dispatched_at timestamptz;

-- The dispatcher's hot query: due queued runs, oldest first. Heartbeats update only
-- lease_until and heartbeat_at, which no index covers, so they stay HOT updates.
CREATE INDEX runs_due ON runs (available_at) WHERE status = 'queued';
CREATE INDEX runs_dispatched ON runs (dispatched_at) WHERE status = 'dispatched';
CREATE INDEX runs_running ON runs (id) WHERE status = 'running';

-- One row per message in a Postgres lane, deleted when completed, so the table stays
-- as small as the backlog. visible_at doubles as the lock expiry: a received message
-- is invisible until its lock runs out.
CREATE TABLE lane_messages (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    lane            text        NOT NULL,
    message_id      text        NOT NULL,
    body            jsonb       NOT NULL,
    enqueued_at     timestamptz NOT NULL DEFAULT now(),
    visible_at      timestamptz NOT NULL DEFAULT now(),
    lock_token      uuid,
    delivery_count  integer     NOT NULL DEFAULT 0
);
CREATE INDEX lane_messages_ready ON lane_messages (lane, visible_at, id);
-- Duplicate detection, as Service Bus does it: a second message with the same id
-- while the first is still in the lane is dropped.
CREATE UNIQUE INDEX lane_messages_dedup ON lane_messages (lane, message_id);

CREATE TABLE lane_dead_letters (
    id                bigint PRIMARY KEY,
    lane              text        NOT NULL,
    message_id        text        NOT NULL,
    body              jsonb       NOT NULL,
    enqueued_at       timestamptz NOT NULL,
    delivery_count    integer     NOT NULL,
    reason            text        NOT NULL,
    description       text        NOT NULL DEFAULT '',
    dead_lettered_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX lane_dead_letters_lane ON lane_dead_letters (lane, dead_lettered_at);

-- Wake the dispatcher when a run becomes due now. Postgres folds identical
-- notifications of one transaction into one, so a batch costs one wake-up.
CREATE FUNCTION notify_run_queued() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('workbench_runs', '');
    RETURN NULL;
END $$;

CREATE TRIGGER runs_queued_notify
    AFTER INSERT OR UPDATE OF status ON runs
    FOR EACH ROW WHEN (NEW.status = 'queued' AND NEW.available_at <= now())
    EXECUTE FUNCTION notify_run_queued();

-- Tell the worker running a task that it was cancelled, within a NOTIFY round trip
-- rather than at its next heartbeat.
CREATE FUNCTION notify_run_cancelled() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('workbench_cancel', NEW.id::text);
    RETURN NULL;
END $$;

CREATE TRIGGER runs_cancelled_notify
    AFTER UPDATE OF status ON runs
    FOR EACH ROW WHEN (OLD.status = 'running' AND NEW.status = 'cancelled')
    EXECUTE FUNCTION notify_run_cancelled();
