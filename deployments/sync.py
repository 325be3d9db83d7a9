"""Keep Prefect in step with `task_flows`: the work pool, and one deployment per task flow.

Every task flow runs the same Prefect flow (`flows/taskflow.py:run_task_flow`); its
deployment, named after the task flow's `call_name`, pins the `flow_id` parameter, so
"Run" in the Prefect UI and cron schedules start the right task flow.
"""

from __future__ import annotations

import logging
from typing import Any
from uuid import UUID

from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.client.schemas.filters import (
    FlowFilter,
    FlowFilterName,
    WorkPoolFilter,
    WorkPoolFilterName,
)
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
from prefect.utilities.callables import parameter_schema

from deployments.schedules import schedules_to_keep
from flows.settings import PROJECT_ROOT, get_settings
from flows.task_flow_store import TaskFlow, TaskFlowStore
from flows.taskflow import FLOW_NAME, run_task_flow

logger = logging.getLogger(__name__)

WORKER_TYPE = "taskflows"
ENTRYPOINT = "flows/taskflow.py:run_task_flow"


def deployment_tags(task_flow: TaskFlow) -> list[str]:
    return ["taskflows", f"agent:{task_flow['agent']}"]


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
    """Create or update the task flow's deployment; on a rename, replace the old one."""
    flow_id = await prefect.create_flow_from_name(FLOW_NAME)
    arguments: dict[str, Any] = dict(
        name=task_flow["call_name"],
        work_pool_name=get_settings().work_pool,
        entrypoint=ENTRYPOINT,
        path=str(PROJECT_ROOT),
        parameters={"flow_id": task_flow["id"]},
        parameter_openapi_schema=parameter_schema(run_task_flow).model_dump_for_openapi(),
        tags=deployment_tags(task_flow),
        description=task_flow.get("description") or f"Task flow {task_flow['call_name']!r}",
        # The upsert replaces the schedules: pass them back (and over to a renamed one).
        schedules=await schedules_to_keep(prefect, task_flow.get("deployment_id")),
    )
    try:
        deployment_id = await prefect.create_deployment(flow_id=flow_id, **arguments)
    except ObjectNotFound:  # a fresh Prefect server has no work pool until someone makes it
        await ensure_work_pool(prefect)
        deployment_id = await prefect.create_deployment(flow_id=flow_id, **arguments)
    previous = task_flow.get("deployment_id")
    if previous and previous != deployment_id:
        await _delete_deployment(prefect, previous)
    if previous != deployment_id:
        await task_flows.set_deployment_id(task_flow["id"], deployment_id)
    return deployment_id


async def remove_deployment(prefect: PrefectClient, task_flow: TaskFlow) -> None:
    """Delete the deployment of a deleted task flow (its executions stay)."""
    if task_flow.get("deployment_id"):
        await _delete_deployment(prefect, task_flow["deployment_id"])


async def _delete_deployment(prefect: PrefectClient, deployment_id: UUID) -> None:
    try:
        await prefect.delete_deployment(deployment_id)
    except ObjectNotFound:
        pass


async def sync_all(prefect: PrefectClient, task_flows: TaskFlowStore) -> dict[str, Any]:
    """Bring the deployments in line with `task_flows` (what a worker does at start-up).

    Only what is missing or out of date is written: a deployment per task flow, named after
    it, with its `flow_id`. A deployment is deleted only when, read again at that moment,
    its task flow is gone or now has another deployment (a rename): the API creates task
    flows and their deployments while this runs, and those must survive it.
    """
    await ensure_work_pool(prefect)
    # Only this pool's: deployments of the flow on other pools (deployments/as_code.py) stay.
    deployments = await prefect.read_deployments(
        flow_filter=FlowFilter(name=FlowFilterName(any_=[FLOW_NAME])),
        work_pool_filter=WorkPoolFilter(name=WorkPoolFilterName(any_=[get_settings().work_pool])),
    )
    by_id = {deployment.id: deployment for deployment in deployments}
    synced = 0
    for task_flow in await task_flows.list_task_flows():
        current = by_id.get(task_flow["deployment_id"]) if task_flow["deployment_id"] else None
        if (
            current is None
            or current.name != task_flow["call_name"]
            or current.parameters.get("flow_id") != task_flow["id"]
            or sorted(current.tags) != sorted(deployment_tags(task_flow))
        ):
            await sync_deployment(prefect, task_flows, task_flow)
            synced += 1
    removed = 0
    for deployment in deployments:
        flow_id = deployment.parameters.get("flow_id")
        owner = await task_flows.find_task_flow(flow_id) if isinstance(flow_id, int) else None
        if owner is None or owner["deployment_id"] not in (None, deployment.id):
            await _delete_deployment(prefect, deployment.id)
            removed += 1
    return {"synced": synced, "removed": removed}
