-- Crash detection and resume.
--
-- A worker renews `heartbeat_at` of the executions it is running every few seconds; the
-- reconciler fails a running execution whose lease has expired (its worker died, even
-- with kill -9, on any machine). `attempts` counts how many times the execution was
-- started: a Prefect "Retry" resumes the same execution and bumps it.
ALTER TABLE flow_executions ADD COLUMN IF NOT EXISTS worker_name TEXT;
ALTER TABLE flow_executions ADD COLUMN IF NOT EXISTS heartbeat_at TIMESTAMPTZ;
ALTER TABLE flow_executions ADD COLUMN IF NOT EXISTS attempts INTEGER NOT NULL DEFAULT 0;

-- A lease renewal must not wake every live page: every write a user can see sets
-- `updated_at`, a renewal does not, so only notify when `updated_at` moved.
CREATE OR REPLACE FUNCTION notify_flow_execution_change() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.updated_at = OLD.updated_at THEN
        RETURN NEW;
    END IF;
    -- The channel is flows.channels.EXECUTION_CHANGES (tests/test_stream.py checks they agree).
    PERFORM pg_notify(
        'flow_executions',
        json_build_object('id', NEW.id, 'status', NEW.status,
                          'current_prompt_index', NEW.current_prompt_index)::text
    );
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;
