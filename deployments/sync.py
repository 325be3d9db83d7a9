"""Keep Prefect in step with `task_flows`: the work pool, and per task flow a Prefect flow
and one deployment.

Task flow `hello` is Prefect flow `hello` with deployment `hello/hello`
(`deployments/prefect_flows.py`); every such flow runs `flows/taskflow.py:run_task_flow`,
and the deployment pins its `flow_id` parameter, so "Run" in the Prefect UI and cron
schedules start the right task flow. Deployments made when every task flow shared the
flow `taskflow` are moved to their own flow by the sync, schedules included.
"""

from __future__ import annotations

import logging
from typing import Any
from uuid import UUID

from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.client.schemas.filters import (
    FlowFilter,
    FlowFilterId,
    FlowRunFilter,
    FlowRunFilterDeploymentId,
    FlowRunFilterState,
    FlowRunFilterStateType,
    WorkPoolFilter,
    WorkPoolFilterName,
)
from prefect.client.schemas.objects import StateType
from prefect.client.schemas.responses import DeploymentResponse
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
from prefect.utilities.callables import parameter_schema

from deployments.schedules import clear_schedule, schedules_to_keep
from flows.settings import PROJECT_ROOT, get_settings
from flows.task_flow_store import TaskFlow, TaskFlowStore
from flows.taskflow import run_task_flow

logger = logging.getLogger(__name__)

WORKER_TYPE = "taskflows"
ENTRYPOINT = "flows/taskflow.py:run_task_flow"
# Prefect's API answers at most this many objects per request.
_PAGE = 200


def task_flow_tag(flow_id: int) -> str:
    """The tag that marks every deployment, and so every run, of one task flow (alerts
    match their flow-run events on it; see deployments/alerts.py)."""
    return f"task-flow:{flow_id}"


def deployment_tags(task_flow: TaskFlow) -> list[str]:
    return ["taskflows", f"agent:{task_flow.agent}", task_flow_tag(task_flow.id)]


async def ensure_work_pool(prefect: PrefectClient, name: str | None = None) -> None:
    """Create the `taskflows` work pool when it does not exist yet."""
    name = name or get_settings().work_pool
    try:
        await prefect.read_work_pool(name)
    except ObjectNotFound:
        try:
            await prefect.create_work_pool(
                WorkPoolCreate(
                    name=name,
                    type=WORKER_TYPE,
                    description="Task flows, run in-process by the taskflows worker.",
                )
            )
        except ObjectAlreadyExists:
            pass  # another process created it first


async def sync_deployment(
    prefect: PrefectClient, task_flows: TaskFlowStore, task_flow: TaskFlow
) -> UUID:
    """Create or update the task flow's flow and deployment; on a rename (or a deployment
    of the shared flow of old), replace the old deployment, carrying its schedules over."""
    flow_id = await prefect.create_flow_from_name(prefect_flow_name(task_flow))
    arguments: dict[str, Any] = dict(
        name=task_flow.call_name,
        work_pool_name=get_settings().work_pool,
        entrypoint=ENTRYPOINT,
        path=str(PROJECT_ROOT),
        parameters={"flow_id": task_flow.id},
        parameter_openapi_schema=parameter_schema(run_task_flow).model_dump_for_openapi(),
        tags=deployment_tags(task_flow),
        description=task_flow.description or f"Task flow {task_flow.call_name!r}",
        # The upsert replaces the schedules: pass them back (and over to a renamed one).
        schedules=await schedules_to_keep(prefect, task_flow.deployment_id),
    )
    try:
        deployment_id = await prefect.create_deployment(flow_id=flow_id, **arguments)
    except ObjectNotFound:  # a fresh Prefect server has no work pool until someone makes it
        await ensure_work_pool(prefect)
        deployment_id = await prefect.create_deployment(flow_id=flow_id, **arguments)
    previous = task_flow.deployment_id
    if previous and previous != deployment_id:
        await _retire_deployment(prefect, previous)
    if previous != deployment_id:
        await task_flows.set_deployment_id(task_flow.id, deployment_id)
    return deployment_id


async def remove_deployment(prefect: PrefectClient, task_flow: TaskFlow) -> None:
    """Delete the deployment of a deleted task flow (its executions stay)."""
    if task_flow.deployment_id:
        await _delete_deployment(prefect, task_flow.deployment_id)


async def _delete_deployment(prefect: PrefectClient, deployment_id: UUID) -> None:
    try:
        await prefect.delete_deployment(deployment_id)
    except ObjectNotFound:
        pass


async def _retire_deployment(prefect: PrefectClient, deployment_id: UUID) -> bool:
    """Delete a replaced deployment, unless runs started by a person still wait on it.

    Prefect deletes a deployment's scheduled runs with it: a run queued through the API
    while the worker was down would be lost. Such a deployment only loses its schedules
    (they now live on its successor) and is deleted by a later sync, once its runs ran.
    """
    waiting = await prefect.read_flow_runs(
        flow_run_filter=FlowRunFilter(
            deployment_id=FlowRunFilterDeploymentId(any_=[deployment_id]),
            state=FlowRunFilterState(
                type=FlowRunFilterStateType(any_=[StateType.SCHEDULED, StateType.PENDING])
            ),
        ),
        limit=_PAGE,
    )
    if any(not flow_run.auto_scheduled for flow_run in waiting):
        await clear_schedule(prefect, deployment_id)
        logger.info("Deployment %s still has queued runs; it is deleted later", deployment_id)
        return False
    await _delete_deployment(prefect, deployment_id)
    return True


def prefect_flow_name(task_flow: TaskFlow) -> str:
    """The task flow's Prefect flow: its own, by its name (see deployments/prefect_flows)."""
    return str(task_flow.call_name)


async def _pool_deployments(prefect: PrefectClient) -> list[DeploymentResponse]:
    """Every deployment on our work pool (of any flow), page by page."""
    found: list[DeploymentResponse] = []
    while True:
        page = await prefect.read_deployments(
            work_pool_filter=WorkPoolFilter(
                name=WorkPoolFilterName(any_=[get_settings().work_pool])
            ),
            limit=_PAGE,
            offset=len(found),
        )
        found.extend(page)
        if len(page) < _PAGE:
            return found


async def _flow_names(prefect: PrefectClient, flow_ids: set[UUID]) -> dict[UUID, str]:
    names: dict[UUID, str] = {}
    ids = sorted(flow_ids)
    for start in range(0, len(ids), _PAGE):
        for flow in await prefect.read_flows(
            flow_filter=FlowFilter(id=FlowFilterId(any_=ids[start : start + _PAGE])),
            limit=_PAGE,
        ):
            names[flow.id] = flow.name
    return names


async def sync_all(prefect: PrefectClient, task_flows: TaskFlowStore) -> dict[str, Any]:
    """Bring the deployments in line with `task_flows` (what a worker does at start-up).

    Only what is missing or out of date is written: per task flow a deployment named after
    it, of the flow named after it, with its `flow_id`. A deployment is deleted only when,
    read again at that moment, its task flow is gone or now has another deployment (a
    rename, a move to its own flow): the API creates task flows and their deployments while
    this runs, and those must survive it.
    """
    await ensure_work_pool(prefect)
    # Only this pool's: deployments on other pools (deployments/as_code.py) stay.
    deployments = await _pool_deployments(prefect)
    flow_names = await _flow_names(prefect, {deployment.flow_id for deployment in deployments})
    by_id = {deployment.id: deployment for deployment in deployments}
    synced = 0
    replaced: set[UUID] = set()  # retired by sync_deployment already
    for task_flow in await task_flows.list_task_flows():
        current = by_id.get(task_flow.deployment_id) if task_flow.deployment_id else None
        if (
            current is None
            or current.name != task_flow.call_name
            or flow_names.get(current.flow_id) != prefect_flow_name(task_flow)
            or current.parameters.get("flow_id") != task_flow.id
            or sorted(current.tags) != sorted(deployment_tags(task_flow))
        ):
            if current is not None:
                if await sync_deployment(prefect, task_flows, task_flow) != current.id:
                    replaced.add(current.id)
            else:
                await sync_deployment(prefect, task_flows, task_flow)
            synced += 1
    removed = 0
    for deployment in deployments:
        if deployment.id in replaced:
            continue
        if "scheduled_prompt_id" in deployment.parameters:
            continue  # a scheduled prompt's: deployments/scheduled_prompts.py keeps those
        flow_id = deployment.parameters.get("flow_id")
        owner = await task_flows.find_task_flow(flow_id) if isinstance(flow_id, int) else None
        if owner is None or owner.deployment_id not in (None, deployment.id):
            removed += await _retire_deployment(prefect, deployment.id)
    return {"synced": synced, "removed": removed}
