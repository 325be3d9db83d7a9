"""Task flows: create, read, replace, edit and delete the named lists of prompts.

Every read or write of one task flow answers with an `ETag: "<version>"`; PUT and PATCH
take that version back (`If-Match`, or `version` in the body) and refuse a change based
on an older one with 409, so two people editing at once never silently lose a change.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from prefect.client.orchestration import PrefectClient

from api.deployment_hooks import deployment_outdated, remove_quietly, sync_quietly
from api.deps import PrefectDep, SettingsDep, TaskFlowStoreDep
from api.errors import InvalidRequest
from api.params import FlowId, IfMatch, error_responses, expected_version
from api.schemas import Deleted, TaskFlowIn, TaskFlowOut, TaskFlowPatch, TaskFlowPut
from flows.task_flow_store import TaskFlow, TaskFlowStore

router = APIRouter(
    prefix="/api/task_flows",
    tags=["task flows"],
    responses=error_responses(401, 404, 409, 422, 503),
)


def _with_etag(task_flow: TaskFlow, response: Response) -> TaskFlowOut:
    response.headers["ETag"] = f'"{task_flow.version}"'
    return TaskFlowOut.model_validate(task_flow)


@router.get("")
async def list_task_flows(task_flows: TaskFlowStoreDep) -> list[TaskFlowOut]:
    """Every task flow, by name."""
    return [TaskFlowOut.model_validate(row) for row in await task_flows.list_task_flows()]


@router.post("", status_code=201)
async def create_task_flow(
    body: TaskFlowIn,
    task_flows: TaskFlowStoreDep,
    prefect: PrefectDep,
    settings: SettingsDep,
    response: Response,
) -> TaskFlowOut:
    """Create a task flow and its Prefect deployment; 409 when the name is taken."""
    task_flow = await task_flows.create_task_flow(
        call_name=body.call_name,
        agent=body.agent or settings.default_agent,
        prompts=body.prompts,
        description=body.description,
    )
    task_flow = await sync_quietly(prefect, task_flows, task_flow)
    response.headers["Location"] = f"{router.prefix}/{task_flow.id}"
    return _with_etag(task_flow, response)


@router.get("/{flow_id}")
async def read_task_flow(
    flow_id: FlowId, task_flows: TaskFlowStoreDep, response: Response
) -> TaskFlowOut:
    return _with_etag(await task_flows.get_task_flow(flow_id), response)


@router.put("/{flow_id}")
async def replace_task_flow(
    flow_id: FlowId,
    body: TaskFlowPut,
    task_flows: TaskFlowStoreDep,
    prefect: PrefectDep,
    settings: SettingsDep,
    response: Response,
    if_match: IfMatch = None,
) -> TaskFlowOut:
    """Replace every editable field; an omitted `agent` becomes the default agent."""
    changes = body.model_dump(exclude={"version"})
    changes["agent"] = body.agent or settings.default_agent
    version = expected_version(body.version, if_match)
    task_flow = await _update(task_flows, prefect, flow_id, changes, version)
    return _with_etag(task_flow, response)


@router.patch("/{flow_id}")
async def edit_task_flow(
    flow_id: FlowId,
    body: TaskFlowPatch,
    task_flows: TaskFlowStoreDep,
    prefect: PrefectDep,
    response: Response,
    if_match: IfMatch = None,
) -> TaskFlowOut:
    """Change only the fields sent."""
    changes = body.model_dump(exclude_unset=True, exclude={"version"})
    if not changes:
        raise InvalidRequest(
            "Nothing to change: send at least one of call_name, agent, description, prompts."
        )
    version = expected_version(body.version, if_match)
    task_flow = await _update(task_flows, prefect, flow_id, changes, version)
    return _with_etag(task_flow, response)


@router.delete("/{flow_id}")
async def delete_task_flow(
    flow_id: FlowId, task_flows: TaskFlowStoreDep, prefect: PrefectDep
) -> Deleted:
    """Delete a task flow and its deployment; its executions stay in the history."""
    task_flow = await task_flows.delete_task_flow(flow_id)
    await remove_quietly(prefect, task_flow)
    return Deleted(id=flow_id)


async def _update(
    task_flows: TaskFlowStore,
    prefect: PrefectClient,
    flow_id: int,
    changes: dict[str, Any],
    version: int | None,
) -> TaskFlow:
    before = await task_flows.get_task_flow(flow_id)
    after = await task_flows.update_task_flow(flow_id, changes, expected_version=version)
    if deployment_outdated(before, after):
        after = await sync_quietly(prefect, task_flows, after)
    return after
