"""Starting a run of a task flow: `POST /api/task_flows/{id}/run`.

It answers as soon as the execution is recorded and its Prefect flow run created; a worker
runs it. The same `Idempotency-Key` for the same task flow gives back the same execution,
so a retried click or request never starts a second run.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Header, Response

from api.deps import PoolDep, PrefectDep, TaskFlowStoreDep
from api.params import FlowId, error_responses
from api.schemas import RunIn, RunOut
from deployments.launch import start_run

router = APIRouter(
    tags=["runs"],
    responses=error_responses(401, 404, 415, 422, 503),
)

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=200,
        description="Any unique string; repeating it returns the execution it started.",
    ),
]


@router.post("/api/task_flows/{flow_id}/run")
async def run_task_flow(
    flow_id: FlowId,
    task_flows: TaskFlowStoreDep,
    pool: PoolDep,
    prefect: PrefectDep,
    response: Response,
    idempotency_key: IdempotencyKey = None,
    body: Annotated[RunIn | None, Body()] = None,
) -> RunOut:
    """Queue a run and return its execution id at once (the seed's `{ok, execution_id}`)."""
    task_flow = await task_flows.get_task_flow(flow_id)
    execution, created = await start_run(
        pool=pool,
        prefect=prefect,
        task_flow=task_flow,
        trigger=body.trigger if body is not None else "api",
        idempotency_key=idempotency_key,
    )
    if not created:
        response.headers["Idempotent-Replayed"] = "true"
    return RunOut(
        execution_id=execution.id,
        flow_id=task_flow.id,
        flow_run_id=execution.flow_run_id,
        status=execution.status,
    )
