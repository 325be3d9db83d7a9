"""Start a run of a task flow: record the execution, create the Prefect flow run, wake a worker.

The caller gets the execution back at once; a worker picks the flow run up.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any
from uuid import UUID

import httpx
from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.actions import DeploymentFlowRunCreate
from prefect.client.schemas.objects import FlowRun
from prefect.exceptions import ObjectNotFound, PrefectHTTPStatusError
from prefect.states import Scheduled, to_state_create

from deployments.sync import sync_deployment
from flows.channels import WORKER_WAKEUP
from flows.database import Pool
from flows.errors import OrchestratorUnavailable
from flows.execution_store import Execution, ExecutionStore
from flows.task_flow_store import TaskFlow, TaskFlowStore
from flows.taskflow import flow_run_name

logger = logging.getLogger(__name__)


async def start_run(
    *,
    pool: Pool,
    prefect: PrefectClient,
    task_flow: TaskFlow,
    trigger: str = "api",
    idempotency_key: str | None = None,
    retry_of: int | None = None,
) -> tuple[Execution, bool]:
    """Queue a run of `task_flow`; return `(execution, created)`.

    With an `idempotency_key` seen before for this task flow, the earlier execution comes
    back and nothing new runs.
    """
    executions = ExecutionStore(pool)
    execution, created = await executions.create_execution(
        flow_id=task_flow.id,
        call_name=task_flow.call_name,
        agent=task_flow.agent,
        prompts=list(task_flow.prompts),
        trigger=trigger,
        retry_of=retry_of,
        idempotency_key=idempotency_key,
    )
    if not created:
        return execution, False
    return await launch_execution(
        pool=pool, prefect=prefect, task_flow=task_flow, execution=execution
    ), True


async def launch_execution(
    *, pool: Pool, prefect: PrefectClient, task_flow: TaskFlow, execution: Execution
) -> Execution:
    """Create the Prefect flow run of a queued execution and wake the workers.

    When Prefect cannot take the run, the execution is marked failed (it must not stay
    queued forever) and `OrchestratorUnavailable` is raised.
    """
    executions = ExecutionStore(pool)
    try:
        flow_run = await _create_flow_run(pool, prefect, task_flow, execution)
    except (httpx.HTTPError, PrefectHTTPStatusError) as exc:
        logger.warning("Could not create the flow run of execution %s: %r", execution.id, exc)
        message = "Could not start the run: the Prefect API did not accept the flow run."
        await executions.complete_execution(execution.id, "failed", message)
        raise OrchestratorUnavailable(message) from None
    except BaseException:
        # Whatever else went wrong, the execution must not stay queued forever.
        await executions.complete_execution(
            execution.id, "failed", "Could not start the run: an internal error occurred."
        )
        raise
    await executions.set_flow_run(execution.id, flow_run.id)
    await wake_workers(pool, flow_run)
    return replace(execution, flow_run_id=flow_run.id)


async def _create_flow_run(
    pool: Pool, prefect: PrefectClient, task_flow: TaskFlow, execution: Execution
) -> FlowRun:
    arguments: dict[str, Any] = {
        "parameters": {"flow_id": task_flow.id, "execution_id": execution.id},
        "name": flow_run_name(task_flow.call_name, execution.id),
        "tags": [f"trigger:{execution.trigger}"],
    }
    deployment_id = task_flow.deployment_id
    if deployment_id is not None:
        try:
            return await create_from_deployment(prefect, deployment_id, **arguments)
        except ObjectNotFound:
            pass  # deleted behind our back: recreate it below
    deployment_id = await sync_deployment(prefect, TaskFlowStore(pool), task_flow)
    return await create_from_deployment(prefect, deployment_id, **arguments)


async def create_from_deployment(
    prefect: PrefectClient,
    deployment_id: UUID,
    *,
    parameters: dict[str, Any],
    name: str,
    tags: list[str],
) -> FlowRun:
    """`PrefectClient.create_flow_run_from_deployment`, plus the REST API's
    `enforce_parameter_schema: false`, which that method does not expose.

    The two parameters are our own ids, right by construction: the Prefect server need not
    validate them against the deployment's parameter schema (a JSON-schema check per launch,
    about a tenth of the launch route's CPU in `python -m bench --profile`). Runs started
    from the Prefect UI or by a schedule are still checked.
    """
    create = DeploymentFlowRunCreate(
        parameters=parameters,
        name=name,
        tags=tags,
        state=to_state_create(Scheduled()),
        enforce_parameter_schema=False,
    )
    try:
        response = await prefect.request(
            "POST",
            "/deployments/{id}/create_flow_run",
            path_params={"id": deployment_id},
            json=create.model_dump(mode="json", exclude_unset=True),
        )
    except PrefectHTTPStatusError as exc:
        if exc.response.status_code == 404:
            raise ObjectNotFound(http_exc=exc) from exc
        raise
    return FlowRun.model_validate(response.json())


# NOTIFY payloads must stay under 8,000 bytes.
_MAX_PAYLOAD = 7_900


async def wake_workers(pool: Pool, flow_run: FlowRun) -> None:
    """Announce the new flow run; with the whole flow run in the payload, a worker claims it
    without first asking Prefect which runs are scheduled (one round trip less)."""
    payload = flow_run.model_dump_json()
    if len(payload.encode()) > _MAX_PAYLOAD:
        payload = str(flow_run.id)
    async with pool.connection() as conn:
        await conn.execute("SELECT pg_notify(%s, %s)", (WORKER_WAKEUP, payload))
