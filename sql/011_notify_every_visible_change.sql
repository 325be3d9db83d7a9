-- Every change a reader can see is notified, not only the writes that move `updated_at`.
--
-- The API keeps the answers of its hot reads in memory (api/read_cache.py) and drops them
-- on these notifications, so a change that is not notified would be served stale. Until
-- now the channel missed: an UPDATE that leaves `updated_at` alone (a hand-written fix, the
-- `retry_of` set to NULL when the execution it names is deleted), a DELETE, any write to
-- `execution_results` that does not also update its execution, and TRUNCATE.
--
-- Payloads keep the shape `{"id", "status", "current_prompt_index"}` (flows/channels.py).
-- A deleted execution is `{"id", "status": null, "current_prompt_index": null}`; a TRUNCATE
-- is all nulls: "anything may have changed".

-- The channel is flows.channels.EXECUTION_CHANGES (tests/test_stream.py checks they agree).
CREATE OR REPLACE FUNCTION notify_flow_execution_change() RETURNS trigger AS $$
BEGIN
    -- A lease renewal (only `heartbeat_at`, which no answer shows) must not wake every live
    -- page. Any other column moving is a change someone can see.
    IF TG_OP = 'UPDATE' AND NEW.updated_at = OLD.updated_at
       AND to_jsonb(NEW) - 'heartbeat_at' = to_jsonb(OLD) - 'heartbeat_at' THEN
        RETURN NEW;
    END IF;
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify(
            'flow_executions',
            json_build_object('id', OLD.id, 'status', NULL, 'current_prompt_index', NULL)::text
        );
        RETURN OLD;
    END IF;
    PERFORM pg_notify(
        'flow_executions',
        json_build_object('id', NEW.id, 'status', NEW.status,
                          'current_prompt_index', NEW.current_prompt_index)::text
    );
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

DROP TRIGGER IF EXISTS flow_executions_notify ON flow_executions;
CREATE TRIGGER flow_executions_notify
    AFTER INSERT OR UPDATE OR DELETE ON flow_executions
    FOR EACH ROW EXECUTE FUNCTION notify_flow_execution_change();

-- A result written, changed or removed changes its execution's answers. The payload is the
-- execution's own (its status and index as they are now), so a result stored in the same
-- statement as its execution's progress (flows/execution_store.py) adds no second message:
-- PostgreSQL delivers identical notifications of one transaction once.
CREATE OR REPLACE FUNCTION notify_execution_result_change() RETURNS trigger AS $$
DECLARE
    -- An UPDATE that moves a result to another execution changes both.
    changed_ids BIGINT[] := CASE TG_OP
        WHEN 'INSERT' THEN ARRAY[NEW.execution_id]
        WHEN 'DELETE' THEN ARRAY[OLD.execution_id]
        ELSE ARRAY[OLD.execution_id, NEW.execution_id] END;
BEGIN
    PERFORM pg_notify(
        'flow_executions',
        json_build_object('id', changed.id, 'status', e.status,
                          'current_prompt_index', e.current_prompt_index)::text
    )
    FROM (SELECT DISTINCT unnest(changed_ids) AS id) AS changed
    LEFT JOIN flow_executions AS e ON e.id = changed.id;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

DROP TRIGGER IF EXISTS execution_results_notify ON execution_results;
CREATE TRIGGER execution_results_notify
    AFTER INSERT OR UPDATE OR DELETE ON execution_results
    FOR EACH ROW EXECUTE FUNCTION notify_execution_result_change();

-- TRUNCATE fires no row trigger: say "everything".
CREATE OR REPLACE FUNCTION notify_executions_truncated() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify(
        'flow_executions',
        json_build_object('id', NULL, 'status', NULL, 'current_prompt_index', NULL)::text
    );
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

DROP TRIGGER IF EXISTS flow_executions_notify_truncate ON flow_executions;
CREATE TRIGGER flow_executions_notify_truncate
    AFTER TRUNCATE ON flow_executions
    FOR EACH STATEMENT EXECUTE FUNCTION notify_executions_truncated();
DROP TRIGGER IF EXISTS execution_results_notify_truncate ON execution_results;
CREATE TRIGGER execution_results_notify_truncate
    AFTER TRUNCATE ON execution_results
    FOR EACH STATEMENT EXECUTE FUNCTION notify_executions_truncated();
