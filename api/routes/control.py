"""Cancel and retry an execution: `POST /api/executions/{id}/cancel` and `.../retry`."""

from __future__ import annotations

from fastapi import APIRouter, Response

from api.deps import ExecutionStoreDep, PoolDep, PrefectDep, SettingsDep
from api.params import ExecutionId, error_responses
from api.routes.executions import execution_response
from api.routes.runs import IdempotencyKey
from api.schemas import ExecutionOut, RetryOut
from deployments.control import cancel_execution, retry_execution
from flows.errors import NotFoundError
from flows.execution_store import Execution, ExecutionStore

router = APIRouter(
    prefix="/api/executions",
    tags=["executions"],
    responses=error_responses(401, 404, 409, 422, 503),
)


async def _existing(executions: ExecutionStore, execution_id: int) -> Execution:
    execution = await executions.get_execution(execution_id)
    if execution is None:
        raise NotFoundError(f"Execution {execution_id} does not exist.")
    return execution


@router.post("/{execution_id}/cancel", response_model=ExecutionOut)
async def cancel(
    execution_id: ExecutionId,
    executions: ExecutionStoreDep,
    pool: PoolDep,
    prefect: PrefectDep,
    settings: SettingsDep,
) -> Response:
    """Cancel a queued or running execution; the agent call in flight is abandoned."""
    execution = await _existing(executions, execution_id)
    cancelled = await cancel_execution(pool=pool, prefect=prefect, execution=execution)
    return await execution_response(executions, cancelled.id, settings)


@router.post("/{execution_id}/retry")
async def retry(
    execution_id: ExecutionId,
    executions: ExecutionStoreDep,
    pool: PoolDep,
    prefect: PrefectDep,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> RetryOut:
    """Resume a failed or cancelled execution at its first unfinished prompt, as a new
    execution whose `retry_of` is this one; prompts that succeeded are not sent again."""
    execution = await _existing(executions, execution_id)
    retried, created = await retry_execution(
        pool=pool, prefect=prefect, execution=execution, idempotency_key=idempotency_key
    )
    if not created:
        response.headers["Idempotent-Replayed"] = "true"
    assert retried.flow_id is not None  # retry_execution refuses runs of no task flow
    return RetryOut(
        execution_id=retried.id,
        flow_id=retried.flow_id,
        flow_run_id=retried.flow_run_id,
        status=retried.status,
        retry_of=execution_id,
    )
