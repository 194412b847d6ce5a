-- The worker's path: every claim, heartbeat and outcome finds its task by the run it
-- holds (tasks.current_run_id); without an index that is a scan of the whole ledger.
CREATE UNIQUE INDEX tasks_current_run ON tasks (current_run_id);

-- Room on each page of runs so a heartbeat (lease_until, heartbeat_at: no index covers
-- either) writes the new row version beside the old one: a HOT update, no index
-- entries, and the page cleaned by later reads instead of by vacuum alone.
ALTER TABLE runs SET (fillfactor = 70);

-- Trace notifications once per statement instead of once per row: a batch of claims or
-- completions appends hundreds of events in one statement, and a row trigger would run
-- its function for each. Still one notification per task (the payload the event
-- streams listen for); Postgres folds duplicates within a transaction.
DROP TRIGGER trace_events_notify ON trace_events;
DROP FUNCTION notify_trace_appended();

CREATE FUNCTION notify_traces_appended() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('workbench_traces', task_id::text)
    FROM (SELECT DISTINCT task_id FROM appended) AS tasks;
    RETURN NULL;
END $$;

CREATE TRIGGER trace_events_notify
    AFTER INSERT ON trace_events
    REFERENCING NEW TABLE AS appended
    FOR EACH STATEMENT EXECUTE FUNCTION notify_traces_appended();
