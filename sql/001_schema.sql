-- The taskflows schema: task flows, memories and the executions mirrored from Prefect.

CREATE TABLE IF NOT EXISTS task_flows (
    id            BIGSERIAL PRIMARY KEY,
    call_name     TEXT NOT NULL UNIQUE CHECK (length(btrim(call_name)) > 0),
    description   TEXT NOT NULL DEFAULT '',
    agent         TEXT NOT NULL,
    prompts       JSONB NOT NULL CHECK (jsonb_typeof(prompts) = 'array' AND jsonb_array_length(prompts) > 0),
    -- Optimistic concurrency: every update bumps it; a stale write is refused.
    version       INTEGER NOT NULL DEFAULT 1,
    -- The Prefect deployment that runs this task flow (NULL until it is synced).
    deployment_id UUID,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS memories (
    id         BIGSERIAL PRIMARY KEY,
    content    TEXT NOT NULL CHECK (length(btrim(content)) > 0),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS flow_executions (
    id                   BIGSERIAL PRIMARY KEY,
    -- No foreign key on purpose: deleting a task flow keeps its history.
    flow_id              BIGINT NOT NULL,
    status               TEXT NOT NULL DEFAULT 'queued'
                         CHECK (status IN ('queued', 'running', 'completed', 'failed', 'cancelled')),
    current_prompt_index INTEGER NOT NULL DEFAULT 0,
    total_prompts        INTEGER NOT NULL CHECK (total_prompts > 0),
    started_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    completed_at         TIMESTAMPTZ,
    error                TEXT,
    prompt_results       JSONB NOT NULL DEFAULT '[]'::jsonb,
    -- What the design adds: the run as it was launched, and where it came from.
    flow_run_id          UUID,
    call_name            TEXT NOT NULL,
    agent                TEXT NOT NULL,
    prompts              JSONB NOT NULL,
    trigger              TEXT NOT NULL DEFAULT 'api'
                         CHECK (trigger IN ('api', 'schedule', 'prefect-ui', 'retry', 'cli')),
    retry_of             BIGINT REFERENCES flow_executions (id) ON DELETE SET NULL,
    idempotency_key      TEXT,
    queued_at            TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at           TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE UNIQUE INDEX IF NOT EXISTS flow_executions_flow_run_id_key
    ON flow_executions (flow_run_id) WHERE flow_run_id IS NOT NULL;
CREATE UNIQUE INDEX IF NOT EXISTS flow_executions_idempotency_key
    ON flow_executions (flow_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
-- "Active" is read every two seconds by every open page: keep it an index-only walk.
CREATE INDEX IF NOT EXISTS flow_executions_active
    ON flow_executions (id) WHERE status IN ('queued', 'running');
CREATE INDEX IF NOT EXISTS flow_executions_flow_id ON flow_executions (flow_id, id DESC);

-- Push every change to listeners (the API's live stream, the worker's wake-up) at once.
-- The payload stays tiny: listeners read the row itself.
CREATE OR REPLACE FUNCTION notify_flow_execution_change() RETURNS trigger AS $$
BEGIN
    -- The channel is flows.channels.EXECUTION_CHANGES (tests/test_stream.py checks they agree).
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
    AFTER INSERT OR UPDATE ON flow_executions
    FOR EACH ROW EXECUTE FUNCTION notify_flow_execution_change();
