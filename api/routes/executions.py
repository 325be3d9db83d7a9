"""Executions: the runs of task flows as mirrored in `flow_executions`.

The seed's shapes are kept: `active` and `recent` answer a JSON array of executions,
`/{id}` the execution object. Each carries a `prefect_url` to its flow run.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import ExecutionStoreDep, ResourcesDep, SettingsDep
from api.params import ExecutionId, error_responses
from api.schemas import MAX_ID, ExecutionOut, PartialResponse
from flows.errors import NotFoundError
from flows.execution_store import Execution
from flows.prefect_links import flow_run_url
from flows.settings import Settings

router = APIRouter(
    prefix="/api/executions", tags=["executions"], responses=error_responses(404, 422, 503)
)

Limit = Annotated[int, Query(ge=1, le=500, description="How many executions, 1..500")]
BeforeId = Annotated[
    int | None, Query(ge=1, le=MAX_ID, description="Only executions older than this id")
]


def to_execution_out(execution: Execution, settings: Settings) -> ExecutionOut:
    prefect_url = flow_run_url(settings.resolved_prefect_ui_url(), execution.get("flow_run_id"))
    return ExecutionOut.model_validate({**execution, "prefect_url": prefect_url})


# /active and /recent come before /{execution_id}, which would otherwise match them.
@router.get("/active")
async def list_active_executions(
    executions: ExecutionStoreDep, settings: SettingsDep
) -> list[ExecutionOut]:
    """Queued and running executions, oldest first."""
    rows = await executions.list_active_executions()
    return [to_execution_out(row, settings) for row in rows]


@router.get("/recent")
async def list_recent_executions(
    executions: ExecutionStoreDep,
    settings: SettingsDep,
    limit: Limit = 20,
    before_id: BeforeId = None,
) -> list[ExecutionOut]:
    """The newest executions first; pass the last id as `before_id` for the next page."""
    rows = await executions.list_recent_executions(limit, before_id=before_id)
    return [to_execution_out(row, settings) for row in rows]


@router.get("/{execution_id}")
async def read_execution(
    execution_id: ExecutionId,
    executions: ExecutionStoreDep,
    settings: SettingsDep,
    resources: ResourcesDep,
) -> ExecutionOut:
    """One execution; while a prompt is being answered, `partial_response` has the text
    the agent has written so far."""
    execution = await executions.get_execution(execution_id)
    if execution is None:
        raise NotFoundError(f"Execution {execution_id} does not exist.")
    out = to_execution_out(execution, settings)
    partial = resources.live.partial_of(execution_id)
    if partial is not None and execution["status"] == "running":
        out.partial_response = PartialResponse.model_validate(partial)
    return out
