-- Prompt results in rows of their own.
--
-- Appending to a growing JSONB array rewrites the whole (TOASTed) value on every prompt:
-- 6 ms at prompt 1, 192 ms at prompt 200 with 50 KB answers. One row per result keeps
-- every append the same size, whatever came before. `prompt_results` in the API is
-- assembled from these rows on read, in the same JSON shape and order.
CREATE TABLE IF NOT EXISTS execution_results (
    id            BIGSERIAL PRIMARY KEY,
    -- Results live and die with their execution (an execution itself is never deleted by
    -- deleting its task flow: see 001).
    execution_id  BIGINT NOT NULL REFERENCES flow_executions (id) ON DELETE CASCADE,
    -- The prompt this result answers (0-based); the order results are read back in.
    prompt_index  INTEGER NOT NULL,
    success       BOOLEAN NOT NULL,
    -- When the attempt started: with the index, it recognises a repeated write of the same
    -- attempt (a write retried after a lost connection must not add a second row).
    started_at    TIMESTAMPTZ,
    -- The result item exactly as the API shows it in `prompt_results`.
    item          JSONB NOT NULL CHECK (jsonb_typeof(item) = 'object')
);

CREATE INDEX IF NOT EXISTS execution_results_by_execution
    ON execution_results (execution_id, prompt_index, id);
CREATE UNIQUE INDEX IF NOT EXISTS execution_results_attempt
    ON execution_results (execution_id, prompt_index, started_at);

-- Move the results stored so far, in their order. An item without an index (written by an
-- older writer) takes its position in the array.
INSERT INTO execution_results (execution_id, prompt_index, success, started_at, item)
SELECT e.id,
       CASE WHEN jsonb_typeof(r.item -> 'index') = 'number'
            THEN (r.item ->> 'index')::integer ELSE (r.position - 1)::integer END,
       COALESCE(r.item ->> 'success' = 'true', false),
       CASE WHEN jsonb_typeof(r.item -> 'started_at') = 'string'
            THEN (r.item ->> 'started_at')::timestamptz END,
       r.item
FROM flow_executions AS e
CROSS JOIN LATERAL jsonb_array_elements(e.prompt_results) WITH ORDINALITY AS r (item, position)
WHERE jsonb_typeof(e.prompt_results) = 'array' AND jsonb_typeof(r.item) = 'object'
ORDER BY e.id, r.position
ON CONFLICT DO NOTHING;

ALTER TABLE flow_executions DROP COLUMN IF EXISTS prompt_results;

-- A result as lists and the live stream show it: the prompt and the response cut to
-- `chars` characters (the full execution has them all).
CREATE OR REPLACE FUNCTION execution_result_preview(item jsonb, chars integer) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT item
        || CASE WHEN jsonb_typeof(item -> 'prompt') = 'string'
                THEN jsonb_build_object('prompt', left(item ->> 'prompt', chars))
                ELSE '{}'::jsonb END
        || CASE WHEN jsonb_typeof(item -> 'response') = 'string'
                THEN jsonb_build_object('response', left(item ->> 'response', chars))
                ELSE '{}'::jsonb END
$$;
