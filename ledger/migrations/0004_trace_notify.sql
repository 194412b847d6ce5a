-- Live event streams: tell API replicas that a task's trace grew. One notification
-- per task per transaction (Postgres folds identical ones), whichever replica wrote it.
CREATE FUNCTION notify_trace_appended() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('workbench_traces', NEW.task_id::text);
    RETURN NULL;
END $$;

CREATE TRIGGER trace_events_notify
    AFTER INSERT ON trace_events
    FOR EACH ROW EXECUTE FUNCTION notify_trace_appended();
