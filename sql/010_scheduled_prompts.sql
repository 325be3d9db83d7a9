-- Scheduled prompts: one prompt sent to an agent at a time of day on chosen weekdays.
--
-- The old system kept them in this table (its UI edits them) but never ran them; here
-- each row is a Prefect deployment with one cron schedule (deployments/scheduled_prompts.py)
-- and its runs are executions like any other. A database taken over from the old system
-- already has the table: CREATE ... IF NOT EXISTS keeps its rows, and the columns added
-- below get defaults, so its rows get live schedules at the next start.
CREATE TABLE IF NOT EXISTS scheduled_prompts (
    id           BIGSERIAL PRIMARY KEY,
    time_of_day  TEXT NOT NULL,                          -- "HH:MM", 24-hour
    days_of_week JSONB NOT NULL DEFAULT '[]'::jsonb,     -- 7 booleans, Sunday first
    prompt       TEXT NOT NULL,
    agent        TEXT NOT NULL,
    enabled      BOOLEAN NOT NULL DEFAULT TRUE,
    created_at   TIMESTAMPTZ DEFAULT now(),
    updated_at   TIMESTAMPTZ DEFAULT now()
);

-- The old system's own schema.sql stored days_of_week as TEXT holding JSON.
DO $$
BEGIN
    IF (SELECT data_type FROM information_schema.columns
        WHERE table_schema = current_schema() AND table_name = 'scheduled_prompts'
          AND column_name = 'days_of_week') = 'text' THEN
        ALTER TABLE scheduled_prompts ALTER COLUMN days_of_week DROP DEFAULT;
        ALTER TABLE scheduled_prompts ALTER COLUMN days_of_week TYPE JSONB
            USING COALESCE(NULLIF(btrim(days_of_week), ''), '[]')::jsonb;
        ALTER TABLE scheduled_prompts ALTER COLUMN days_of_week SET DEFAULT '[]'::jsonb;
    END IF;
END
$$;

-- The IANA time zone `time_of_day` is read in (the old system had none: UTC).
ALTER TABLE scheduled_prompts ADD COLUMN IF NOT EXISTS timezone TEXT NOT NULL DEFAULT 'UTC';
-- The Prefect deployment that runs it (NULL until it is synced).
ALTER TABLE scheduled_prompts ADD COLUMN IF NOT EXISTS deployment_id UUID;

-- A scheduled prompt's run belongs to no task flow.
ALTER TABLE flow_executions ALTER COLUMN flow_id DROP NOT NULL;
ALTER TABLE flow_executions ADD COLUMN IF NOT EXISTS scheduled_prompt_id BIGINT;
