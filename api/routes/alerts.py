"""A task flow's failure alert: `GET|PUT|DELETE /api/task_flows/{id}/alerts`.

The alert is a Prefect automation with a webhook notification block (see
`deployments.alerts`), so it shows on the Prefect UI's Automations page, can be edited
there, and what these endpoints read is what Prefect has.
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from api.deps import PrefectDep, SettingsDep, TaskFlowStoreDep
from api.params import FlowId, error_responses
from api.schemas import AlertIn, AlertOut, Deleted
from deployments.alerts import Alert, delivery_note, read_alert, remove_alert, set_alert
from deployments.sync import sync_deployment
from flows.errors import NotFoundError
from flows.prefect_links import automation_url
from flows.settings import Settings
from flows.task_flow_store import TaskFlow

router = APIRouter(tags=["alerts"], responses=error_responses(401, 404, 422, 503))


def to_alert_out(
    task_flow: TaskFlow, alert: Alert, settings: Settings, note: str | None = None
) -> AlertOut:
    return AlertOut(
        note=note,
        flow_id=task_flow.id,
        call_name=task_flow.call_name,
        webhook_url=alert.webhook_url,
        on=alert.on,
        enabled=alert.enabled,
        automation_id=alert.automation_id,
        automation_name=alert.name,
        prefect_url=automation_url(settings.resolved_prefect_ui_url(), alert.automation_id),
    )


@router.get("/api/task_flows/{flow_id}/alerts")
async def read_task_flow_alert(
    flow_id: FlowId, task_flows: TaskFlowStoreDep, prefect: PrefectDep, settings: SettingsDep
) -> AlertOut:
    """The task flow's alert; 404 when it has none."""
    task_flow = await task_flows.get_task_flow(flow_id)
    alert = await read_alert(prefect, flow_id)
    if alert is None:
        raise NotFoundError(f"Task flow {flow_id} has no alert; PUT one to create it.")
    return to_alert_out(task_flow, alert, settings, await delivery_note(prefect))


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
    alert = await set_alert(
        prefect,
        task_flow,
        webhook_url=body.webhook_url,
        on=list(body.on),
        enabled=body.enabled,
        # Links in the message lead to the page at the address the user reached us by.
        page_url=str(request.base_url),
        prefect_ui_url=settings.resolved_prefect_ui_url(),
    )
    return to_alert_out(task_flow, alert, settings, await delivery_note(prefect))


@router.delete("/api/task_flows/{flow_id}/alerts")
async def delete_task_flow_alert(
    flow_id: FlowId, task_flows: TaskFlowStoreDep, prefect: PrefectDep
) -> Deleted:
    """Remove the alert (the automation and its webhook block); fine when there is none."""
    await task_flows.get_task_flow(flow_id)
    await remove_alert(prefect, flow_id)
    return Deleted(id=flow_id)
