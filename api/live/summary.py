"""The execution summary: an execution as the live view sees it, defined here once.

It is the execution object of `GET /api/executions/{id}` without `prompts` and
`prompt_results` (which grow with every prompt), plus what a live view needs from them: the
prompt being answered, how many results there are and the last one, long texts cut to
`PREVIEW_CHARS`. The stream's `snapshot` and `execution` events carry it, and so does `GET
/api/executions/summaries` (the page's polling and refreshes): the page draws it as sent and
never derives it from a full execution.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, Field

from api.schemas import ExecutionCore
from flows.database import Pool
from flows.prefect_links import flow_run_url

# Long texts are cut to this many characters; GET /api/executions/{id} has them all.
PREVIEW_CHARS = 2000

_SUMMARY_SQL = """
    SELECT id, flow_id, status, current_prompt_index, total_prompts, started_at, completed_at,
           error, flow_run_id, call_name, agent, trigger, retry_of, attempts, worker_name,
           queued_at, updated_at,
           left(prompts ->> current_prompt_index, %(preview)s) AS current_prompt,
           (SELECT count(*) FROM execution_results AS r
            WHERE r.execution_id = flow_executions.id) AS results_count,
           (SELECT r.item FROM execution_results AS r WHERE r.execution_id = flow_executions.id
            ORDER BY r.prompt_index DESC, r.id DESC LIMIT 1) AS last_result
    FROM flow_executions
    WHERE id = ANY(%(ids)s) OR (%(with_active)s AND status IN ('queued', 'running'))
    ORDER BY id
"""


class ExecutionSummary(ExecutionCore):
    """An execution as the stream sends it: the execution object of `GET
    /api/executions/{id}` without `prompts` and `prompt_results` (which grow with every
    prompt), plus what a live view needs from them."""

    current_prompt: str | None = Field(
        description="The prompt at current_prompt_index (cut to 2,000 characters)"
    )
    results_count: int = Field(description="How many items prompt_results has")
    last_result: dict[str, Any] | None = Field(
        description="The last item of prompt_results (prompt and response cut to 2,000 characters)"
    )


class Summaries(BaseModel):
    """The data of a `snapshot` event, and the answer of `GET /api/executions/summaries`."""

    executions: list[ExecutionSummary] = Field(description="Oldest first")


async def read_summary_rows(
    pool: Pool, ids: Iterable[int], *, with_active: bool
) -> list[dict[str, Any]]:
    """The rows of the executions `ids` (and of every active one with `with_active`), oldest
    first, with the columns `summary_json` needs. One query, whatever the number of ids."""
    async with pool.connection() as conn:
        cursor = await conn.execute(
            _SUMMARY_SQL,
            {"ids": sorted(set(ids)), "with_active": with_active, "preview": PREVIEW_CHARS},
        )
        return await cursor.fetchall()


def summary_json(row: dict[str, Any], *, prefect_ui_url: str) -> str:
    """One row of `read_summary_rows` as the JSON of an `ExecutionSummary`."""
    flow_run_id = row["flow_run_id"]
    last = row["last_result"]
    if isinstance(last, dict):
        last = {
            **last,
            "prompt": _preview(last.get("prompt")),
            "response": _preview(last.get("response")),
        }
    summary = ExecutionSummary.model_validate(
        {
            **row,
            "last_result": last,
            "prefect_url": flow_run_url(prefect_ui_url, flow_run_id),
        }
    )
    return summary.model_dump_json()


def summaries_json(encoded: Iterable[str]) -> str:
    """`{"executions": [...]}` from summaries already encoded: the data of a `snapshot`."""
    return '{"executions":[' + ",".join(encoded) + "]}"


def _preview(text: object) -> object:
    if isinstance(text, str) and len(text) > PREVIEW_CHARS:
        return text[:PREVIEW_CHARS]
    return text
