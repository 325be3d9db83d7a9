"""The execution summary: an execution as the live view sees it.

It is the execution object of `GET /api/executions/{id}` without `prompts` and
`prompt_results` (which grow with every prompt), plus what a live view needs from them: the
prompt being answered, how many results there are and the last one, long texts cut to 2,000
characters. PostgreSQL builds it, in one place (`ExecutionStore.summaries`, the same SQL as
`GET /api/executions/recent?results=false`); the model here describes it in the OpenAPI
document. The stream's `snapshot` and `execution` events carry it, and so does `GET
/api/executions/summaries` (the page's polling and refreshes): the page draws it as sent and
never derives it from a full execution.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, Field

from api.schemas import ExecutionCore


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


def summaries_json(encoded: Iterable[str]) -> str:
    """`{"executions": [...]}` from summaries already encoded: the data of a `snapshot`."""
    return '{"executions":[' + ",".join(encoded) + "]}"

