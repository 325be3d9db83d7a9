-- Taking over a database made by the old system's install step, in place.
--
-- Its tables (`task_flows`, `memories`, `flow_executions`) already exist with the old
-- columns, so 001's `CREATE TABLE IF NOT EXISTS` would keep them as they are and its indexes
-- would miss columns. This file, applied before 001, brings them to the shape 001 expects:
-- every row is kept, the old columns keep their meaning, NULLs the old schema allowed get
-- the value they stood for, the foreign key that deleted history with its task flow goes,
-- and runs the old system left `running` (nothing supervises them any more) are failed
-- with a sentence saying why. `scheduled_prompts` is left alone.
--
-- On a new database, or one taskflows made, it changes nothing (each step checks first).

-- Old `prompt_results` may be TEXT holding JSON, NULL, or not a list: make it a JSON list
-- of objects, keeping anything unexpected as the response of a failed item.
CREATE FUNCTION pg_temp.adopted_results(value jsonb) RETURNS jsonb LANGUAGE sql AS $$
    SELECT CASE
        WHEN value IS NULL OR jsonb_typeof(value) = 'null' THEN '[]'::jsonb
        WHEN jsonb_typeof(value) = 'object' THEN jsonb_build_array(value)
        WHEN jsonb_typeof(value) <> 'array' THEN jsonb_build_array(jsonb_build_object(
            'success', false, 'prompt', NULL, 'response', value #>> '{}',
            'error', 'The old system stored this result in an unexpected form; '
                     'it is kept as the response.'))
        ELSE COALESCE((
            SELECT jsonb_agg(CASE WHEN jsonb_typeof(item) = 'object' THEN item
                ELSE jsonb_build_object(
                    'success', false, 'prompt', NULL, 'response', item #>> '{}',
                    'error', 'The old system stored this result in an unexpected form; '
                             'it is kept as the response.') END
                ORDER BY position)
            FROM jsonb_array_elements(value) WITH ORDINALITY AS e (item, position)
        ), '[]'::jsonb)
    END
$$;

CREATE FUNCTION pg_temp.adopted_results(value text) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    IF value IS NULL OR btrim(value) = '' THEN
        RETURN '[]'::jsonb;
    END IF;
    RETURN pg_temp.adopted_results(value::jsonb);
EXCEPTION WHEN invalid_text_representation THEN
    RETURN jsonb_build_array(jsonb_build_object(
        'success', false, 'prompt', NULL, 'response', value,
        'error', 'The old system stored these results as text that is not JSON; '
                 'it is kept as the response.'));
END;
$$;

-- Prompts are a list of strings: a non-string prompt (the old system accepted them, then
-- crashed on them) becomes its JSON text; a prompts value that is not a list becomes one.
CREATE FUNCTION pg_temp.adopted_prompts(value jsonb) RETURNS jsonb LANGUAGE sql AS $$
    SELECT CASE
        WHEN value IS NULL OR jsonb_typeof(value) = 'null' THEN '[]'::jsonb
        WHEN jsonb_typeof(value) <> 'array' THEN jsonb_build_array(
            CASE WHEN jsonb_typeof(value) = 'string' THEN value ELSE to_jsonb(value::text) END)
        ELSE COALESCE((
            SELECT jsonb_agg(CASE WHEN jsonb_typeof(item) = 'string' THEN item
                                  ELSE to_jsonb(item::text) END ORDER BY position)
            FROM jsonb_array_elements(value) WITH ORDINALITY AS e (item, position)
        ), '[]'::jsonb)
    END
$$;

DO $$
DECLARE
    fk record;
BEGIN
    -- task_flows: what taskflows adds, and timestamps that are never NULL.
    IF to_regclass('task_flows') IS NOT NULL AND NOT EXISTS (
        SELECT 1 FROM information_schema.columns
        WHERE table_schema = current_schema() AND table_name = 'task_flows'
          AND column_name = 'version'
    ) THEN
        ALTER TABLE task_flows ADD COLUMN IF NOT EXISTS description TEXT NOT NULL DEFAULT '';
        ALTER TABLE task_flows ADD COLUMN IF NOT EXISTS version INTEGER NOT NULL DEFAULT 1;
        ALTER TABLE task_flows ADD COLUMN IF NOT EXISTS deployment_id UUID;
        UPDATE task_flows SET prompts = pg_temp.adopted_prompts(prompts)
        WHERE prompts IS DISTINCT FROM pg_temp.adopted_prompts(prompts);
        UPDATE task_flows
        SET created_at = COALESCE(created_at, updated_at, now()),
            updated_at = COALESCE(updated_at, created_at, now())
        WHERE created_at IS NULL OR updated_at IS NULL;
        ALTER TABLE task_flows ALTER COLUMN created_at SET DEFAULT now(),
                               ALTER COLUMN created_at SET NOT NULL,
                               ALTER COLUMN updated_at SET DEFAULT now(),
                               ALTER COLUMN updated_at SET NOT NULL;
    END IF;

    -- memories: timestamps that are never NULL.
    IF to_regclass('memories') IS NOT NULL THEN
        UPDATE memories
        SET created_at = COALESCE(created_at, updated_at, now()),
            updated_at = COALESCE(updated_at, created_at, now())
        WHERE created_at IS NULL OR updated_at IS NULL;
        ALTER TABLE memories ALTER COLUMN created_at SET DEFAULT now(),
                             ALTER COLUMN created_at SET NOT NULL,
                             ALTER COLUMN updated_at SET DEFAULT now(),
                             ALTER COLUMN updated_at SET NOT NULL;
    END IF;

    IF to_regclass('flow_executions') IS NULL OR EXISTS (
        SELECT 1 FROM information_schema.columns
        WHERE table_schema = current_schema() AND table_name = 'flow_executions'
          AND column_name = 'call_name'
    ) THEN
        RETURN;  -- a new database, or one taskflows made
    END IF;

    -- Deleting a task flow must keep its history: drop the cascading foreign key.
    FOR fk IN
        SELECT conname FROM pg_constraint
        WHERE conrelid = 'flow_executions'::regclass AND contype = 'f'
    LOOP
        EXECUTE format('ALTER TABLE flow_executions DROP CONSTRAINT %I', fk.conname);
    END LOOP;

    -- The results as a JSON list (TEXT or NULL in some old databases); 003 moves them into
    -- rows of their own.
    ALTER TABLE flow_executions ALTER COLUMN prompt_results DROP DEFAULT;
    ALTER TABLE flow_executions
        ALTER COLUMN prompt_results TYPE jsonb USING pg_temp.adopted_results(prompt_results);
    ALTER TABLE flow_executions ALTER COLUMN prompt_results SET DEFAULT '[]'::jsonb,
                                ALTER COLUMN prompt_results SET NOT NULL;

    -- What taskflows adds to an execution. The old system kept no copy of the run's name,
    -- agent and prompts: they are taken from its task flow as it is now.
    ALTER TABLE flow_executions
        ADD COLUMN flow_run_id UUID,
        ADD COLUMN call_name TEXT,
        ADD COLUMN agent TEXT,
        ADD COLUMN prompts JSONB,
        ADD COLUMN trigger TEXT NOT NULL DEFAULT 'api'
            CHECK (trigger IN ('api', 'schedule', 'prefect-ui', 'retry', 'cli')),
        ADD COLUMN retry_of BIGINT REFERENCES flow_executions (id) ON DELETE SET NULL,
        ADD COLUMN idempotency_key TEXT,
        ADD COLUMN queued_at TIMESTAMPTZ,
        ADD COLUMN updated_at TIMESTAMPTZ;
    UPDATE flow_executions AS e
    SET call_name = COALESCE(f.call_name, 'task flow ' || e.flow_id || ' (deleted)'),
        agent = COALESCE(f.agent, 'unknown'),
        prompts = COALESCE(f.prompts, '[]'::jsonb),
        started_at = COALESCE(e.started_at, e.completed_at, now()),
        queued_at = COALESCE(e.started_at, e.completed_at, now()),
        updated_at = COALESCE(e.completed_at, e.started_at, now()),
        current_prompt_index = COALESCE(e.current_prompt_index, 0)
    FROM flow_executions AS old
    LEFT JOIN task_flows AS f ON f.id = old.flow_id
    WHERE old.id = e.id;

    -- Nothing runs the runs the old system left running: say so, and let them be retried.
    UPDATE flow_executions
    SET status = 'failed',
        completed_at = COALESCE(completed_at, now()),
        error = COALESCE(NULLIF(error, '') || ' ', '')
            || 'taskflows took over this database while the old system showed this run as '
            || 'running; nothing was running it any more, so it was marked failed. '
            || 'Retry it to resume at the first unfinished prompt.'
    WHERE status = 'running';

    ALTER TABLE flow_executions
        ALTER COLUMN status SET DEFAULT 'queued',
        ALTER COLUMN current_prompt_index SET NOT NULL,
        ALTER COLUMN started_at SET NOT NULL,
        ALTER COLUMN started_at SET DEFAULT now(),
        ALTER COLUMN call_name SET NOT NULL,
        ALTER COLUMN agent SET NOT NULL,
        ALTER COLUMN prompts SET NOT NULL,
        ALTER COLUMN queued_at SET NOT NULL,
        ALTER COLUMN queued_at SET DEFAULT now(),
        ALTER COLUMN updated_at SET NOT NULL,
        ALTER COLUMN updated_at SET DEFAULT now();
    -- Old rows may have run no prompts at all (the old system accepted empty flows): they
    -- are kept; new rows must have prompts.
    ALTER TABLE flow_executions
        ADD CONSTRAINT flow_executions_total_prompts_check CHECK (total_prompts > 0) NOT VALID,
        ADD CONSTRAINT flow_executions_status_check
            CHECK (status IN ('queued', 'running', 'completed', 'failed', 'cancelled')) NOT VALID;
END;
$$;
