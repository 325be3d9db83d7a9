"""A task flow's cron schedule: `GET|PUT|DELETE /api/task_flows/{id}/schedule`.

The schedule lives on the task flow's Prefect deployment (see `deployments.schedules`), so
what these endpoints read is what Prefect has, including edits made in the Prefect UI.
Task-flow responses do not carry it (that would make every read depend on Prefect):
`GET /api/schedules` gives the schedules of all task flows in one request.
"""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter
from prefect.exceptions import ObjectNotFound

from api.deps import PrefectDep, SettingsDep, TaskFlowStoreDep
from api.params import FlowId, error_responses
from api.schemas import Deleted, ScheduleIn, ScheduleOut
from deployments.schedules import (
    TaskFlowSchedule,
    clear_schedule,
    list_schedules,
    read_schedule,
    set_schedule,
)
from deployments.sync import sync_deployment
from flows.errors import NotFoundError
from flows.prefect_links import deployment_url
from flows.settings import Settings
from flows.task_flow_store import TaskFlow

router = APIRouter(tags=["schedules"], responses=error_responses(401, 404, 422, 503))


def to_schedule_out(
    task_flow: TaskFlow, schedule: TaskFlowSchedule, settings: Settings
) -> ScheduleOut:
    return ScheduleOut(
        flow_id=task_flow.id,
        call_name=task_flow.call_name,
        kind=schedule.kind,
        cron=schedule.cron,
        interval_seconds=schedule.interval_seconds,
        rrule=schedule.rrule,
        timezone=schedule.timezone,
        enabled=schedule.enabled,
        paused=schedule.paused,
        next_runs=schedule.next_runs,
        other_schedules=schedule.other_schedules,
        deployment_id=schedule.deployment_id,
        schedule_id=schedule.schedule_id,
        prefect_url=deployment_url(settings.resolved_prefect_ui_url(), schedule.deployment_id),
    )


@router.get("/api/schedules")
async def list_all_schedules(
    task_flows: TaskFlowStoreDep, prefect: PrefectDep, settings: SettingsDep
) -> list[ScheduleOut]:
    """The schedule of every scheduled task flow, by task flow name."""
    by_deployment = {
        flow.deployment_id: flow
        for flow in await task_flows.list_task_flows()
        if flow.deployment_id is not None
    }
    schedules = await list_schedules(prefect, list(by_deployment))
    return [
        to_schedule_out(by_deployment[deployment_id], schedule, settings)
        for deployment_id, schedule in schedules.items()
    ]


@router.get("/api/task_flows/{flow_id}/schedule")
async def read_task_flow_schedule(
    flow_id: FlowId, task_flows: TaskFlowStoreDep, prefect: PrefectDep, settings: SettingsDep
) -> ScheduleOut:
    """The schedule and its next five run times; 404 when the task flow has none."""
    task_flow = await task_flows.get_task_flow(flow_id)
    deployment_id: UUID | None = task_flow.deployment_id
    schedule = await read_schedule(prefect, deployment_id) if deployment_id else None
    if schedule is None:
        raise NotFoundError(f"Task flow {flow_id} has no schedule; PUT one to create it.")
    return to_schedule_out(task_flow, schedule, settings)


@router.put("/api/task_flows/{flow_id}/schedule")
async def set_task_flow_schedule(
    flow_id: FlowId,
    body: ScheduleIn,
    task_flows: TaskFlowStoreDep,
    prefect: PrefectDep,
    settings: SettingsDep,
) -> ScheduleOut:
    """Set the task flow's one cron schedule (replacing any other) on its deployment."""
    task_flow = await task_flows.get_task_flow(flow_id)

    async def set_on(deployment_id: UUID) -> ScheduleOut:
        schedule = await set_schedule(
            prefect,
            deployment_id,
            flow_id=flow_id,
            cron=body.cron,
            timezone=body.timezone,
            enabled=body.enabled,
        )
        return to_schedule_out(task_flow, schedule, settings)

    if task_flow.deployment_id is not None:
        try:
            return await set_on(task_flow.deployment_id)
        except ObjectNotFound:
            pass  # deleted behind our back: made again below
    # Never synced (Prefect was down when the task flow was saved) or deleted.
    return await set_on(await sync_deployment(prefect, task_flows, task_flow))


@router.delete("/api/task_flows/{flow_id}/schedule")
async def delete_task_flow_schedule(
    flow_id: FlowId, task_flows: TaskFlowStoreDep, prefect: PrefectDep
) -> Deleted:
    """Remove the schedule and the runs it had queued; fine when there is none."""
    task_flow = await task_flows.get_task_flow(flow_id)
    if task_flow.deployment_id is not None:
        await clear_schedule(prefect, task_flow.deployment_id)
    return Deleted(id=flow_id)
