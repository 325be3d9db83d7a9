"""Failure alerts: `GET|PUT|DELETE /api/task_flows/{id}/alerts` for one task flow's runs,
`GET|PUT|DELETE /api/alerts` for every run.

An alert is a Prefect automation with a webhook notification block (see
`deployments.alerts`), so it shows on the Prefect UI's Automations page, can be edited
there, and what these endpoints read is what Prefect has.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from prefect.client.orchestration import PrefectClient

from api.deps import PrefectDep, SettingsDep, TaskFlowStoreDep
from api.params import FlowId, error_responses
from api.schemas import AlertIn, AlertOut, AlertRemoved, AllRunsAlertOut, Deleted
from deployments.alerts import (
    ALL_RUNS,
    Alert,
    AlertScope,
    read_alert,
    remove_alert,
    set_alert,
    task_flow_scope,
)
from deployments.sync import sync_deployment
from flows.errors import NotFoundError
from flows.prefect_links import automation_url
from flows.settings import Settings
from flows.task_flow_store import TaskFlow

router = APIRouter(tags=["alerts"], responses=error_responses(401, 404, 422, 503))


def to_all_runs_alert_out(alert: Alert, settings: Settings) -> AllRunsAlertOut:
    return AllRunsAlertOut(
        webhook_url=alert.webhook_url,
        on=alert.on,
        enabled=alert.enabled,
        automation_id=alert.automation_id,
        automation_name=alert.name,
        prefect_url=automation_url(settings.resolved_prefect_ui_url(), alert.automation_id),
    )


def to_alert_out(task_flow: TaskFlow, alert: Alert, settings: Settings) -> AlertOut:
    return AlertOut(
        **to_all_runs_alert_out(alert, settings).model_dump(),
        flow_id=task_flow.id,
        call_name=task_flow.call_name,
    )


async def _put(
    prefect: PrefectClient,
    scope: AlertScope,
    body: AlertIn,
    request: Request,
    settings: Settings,
) -> Alert:
    return await set_alert(
        prefect,
        scope,
        webhook_url=body.webhook_url,
        on=list(body.on),
        enabled=body.enabled,
        # Links in the message lead to the page at the address the user reached us by.
        page_url=str(request.base_url),
        prefect_ui_url=settings.resolved_prefect_ui_url(),
    )


@router.get("/api/task_flows/{flow_id}/alerts")
async def read_task_flow_alert(
    flow_id: FlowId, task_flows: TaskFlowStoreDep, prefect: PrefectDep, settings: SettingsDep
) -> AlertOut:
    """The task flow's alert; 404 when it has none."""
    task_flow = await task_flows.get_task_flow(flow_id)
    alert = await read_alert(prefect, task_flow_scope(task_flow))
    if alert is None:
        raise NotFoundError(f"Task flow {flow_id} has no alert; PUT one to create it.")
    return to_alert_out(task_flow, alert, settings)


@router.put("/api/task_flows/{flow_id}/alerts")
async def set_task_flow_alert(
    flow_id: FlowId,
    body: AlertIn,
    request: Request,
    task_flows: TaskFlowStoreDep,
    prefect: PrefectDep,
    settings: SettingsDep,
) -> AlertOut:
    """Create or replace the alert: a webhook called when a run fails, is cancelled or late."""
    task_flow = await task_flows.get_task_flow(flow_id)
    # The alert matches runs by the deployment's task-flow tag: make sure it has it (a
    # deployment made before alerts existed gets it here rather than at the next sync).
    await sync_deployment(prefect, task_flows, task_flow)
    alert = await _put(prefect, task_flow_scope(task_flow), body, request, settings)
    return to_alert_out(task_flow, alert, settings)


@router.delete("/api/task_flows/{flow_id}/alerts")
async def delete_task_flow_alert(
    flow_id: FlowId, task_flows: TaskFlowStoreDep, prefect: PrefectDep
) -> Deleted:
    """Remove the alert (the automation and its webhook block); fine when there is none."""
    task_flow = await task_flows.get_task_flow(flow_id)
    await remove_alert(prefect, task_flow_scope(task_flow))
    return Deleted(id=flow_id)


@router.get("/api/alerts")
async def read_all_runs_alert(prefect: PrefectDep, settings: SettingsDep) -> AllRunsAlertOut:
    """The alert for every run; 404 when there is none."""
    alert = await read_alert(prefect, ALL_RUNS)
    if alert is None:
        raise NotFoundError("There is no alert for all runs; PUT one to create it.")
    return to_all_runs_alert_out(alert, settings)


@router.put("/api/alerts")
async def set_all_runs_alert(
    body: AlertIn, request: Request, prefect: PrefectDep, settings: SettingsDep
) -> AllRunsAlertOut:
    """Create or replace the alert for every run of every task flow (alongside any task
    flow's own alert: a run both watch sends to both webhooks)."""
    alert = await _put(prefect, ALL_RUNS, body, request, settings)
    return to_all_runs_alert_out(alert, settings)


@router.delete("/api/alerts")
async def delete_all_runs_alert(prefect: PrefectDep) -> AlertRemoved:
    """Remove the alert for every run; fine when there is none."""
    return AlertRemoved(removed=await remove_alert(prefect, ALL_RUNS))
