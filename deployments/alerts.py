"""Failure alerts, the Prefect way: one Prefect automation per task flow that posts to a
webhook when one of its runs fails, is cancelled, or is late (a scheduled run that did not
start on time).

The automation is an ordinary one, visible and editable on the Prefect UI's Automations
page: an event trigger on the task flow's flow-run events (matched by the `task-flow:<id>`
tag every run of its deployments carries) and a "send notification" action through a
Custom Webhook notification block. Prefect renders the message and posts it as JSON::

    {"subject": "taskflows: hello #12 failed",
     "text": "Task flow: hello\\nExecution: 12\\nState: Failed\\nError: ...\\n
              Page: http://127.0.0.1:8000/#execution-12\\nPrefect UI: http://.../flow-run/..."}

Prefect is the source of truth: the automation is found by the resource it is owned by
(`taskflows.task-flow.<id>`), so a renamed task flow keeps its alert, and a change made in
the Prefect UI is what `read_alert` answers. Alerts need the Prefect server's `triggers`
service (which also runs the actions), and `late_runs` for late alerts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from uuid import UUID

from prefect.blocks.notifications import CustomWebhookNotificationBlock
from prefect.client.orchestration import PrefectClient
from prefect.events.actions import SendNotification
from prefect.events.schemas.automations import (
    Automation,
    AutomationCore,
    EventTrigger,
    Posture,
)
from prefect.exceptions import ObjectNotFound

from deployments.sync import task_flow_tag
from flows.prefect_links import flow_run_url
from flows.task_flow_store import TaskFlow

# What a user can ask to be told about, and the flow-run events that mean it.
ALERT_EVENTS: dict[str, tuple[str, ...]] = {
    "failed": ("prefect.flow-run.Failed", "prefect.flow-run.Crashed"),
    "cancelled": ("prefect.flow-run.Cancelled",),
    "late": ("prefect.flow-run.Late",),
}
_EVENT_TO_ALERT = {event: name for name, events in ALERT_EVENTS.items() for event in events}


def owner_resource(flow_id: int) -> str:
    return f"taskflows.task-flow.{flow_id}"


def block_name(flow_id: int) -> str:
    return f"taskflows-alert-{flow_id}"


@dataclass(frozen=True)
class Alert:
    """A task flow's alert as Prefect has it."""

    automation_id: UUID
    name: str
    webhook_url: str
    on: list[str]
    enabled: bool


def _subject() -> str:
    return "taskflows: {{ flow_run.name }} {{ flow_run.state.name|lower }}"


def _body(page_url: str, prefect_ui_url: str) -> str:
    # Runs started through the API carry their execution id as a parameter; the others
    # (schedules, the Prefect UI) are named "<call_name> #<id>" by the flow.
    execution = "{{ flow_run.parameters.get('execution_id') or flow_run.name.rpartition('#')[2] }}"
    return "\n".join(
        [
            "Task flow: {{ flow.name }}",
            f"Execution: {execution}",
            "State: {{ flow_run.state.name }}",
            "Error: {{ flow_run.state.message or 'none given' }}",
            f"Page: {page_url.rstrip('/')}/#execution-{execution}",
            # The flow run's id is filled in by Prefect's template when the alert fires.
            f"Prefect UI: {flow_run_url(prefect_ui_url.rstrip('/'), '{{ flow_run.id }}')}",
        ]
    )


def _automation(
    task_flow: TaskFlow,
    block_document_id: UUID,
    on: list[str],
    *,
    enabled: bool,
    page_url: str,
    prefect_ui_url: str,
    owned: bool,
) -> AutomationCore:
    expect = {event for name in on for event in ALERT_EVENTS[name]}
    return AutomationCore(
        name=f"taskflows alert: {task_flow.call_name}",
        description=(
            f"Posts to a webhook when a run of task flow {task_flow.call_name!r} "
            f"(id {task_flow.id}) is {' or '.join(on)}. Managed by taskflows: "
            f"PUT/DELETE /api/task_flows/{task_flow.id}/alerts."
        ),
        enabled=enabled,
        trigger=EventTrigger(
            expect=expect,
            match={"prefect.resource.id": "prefect.flow-run.*"},
            match_related={
                "prefect.resource.role": "tag",
                "prefect.resource.id": f"prefect.tag.{task_flow_tag(task_flow.id)}",
            },
            for_each={"prefect.resource.id"},
            posture=Posture.Reactive,
            threshold=1,
            within=timedelta(0),
        ),
        actions=[
            SendNotification(
                block_document_id=block_document_id,
                subject=_subject(),
                body=_body(page_url, prefect_ui_url),
            )
        ],
        # Only on creation: Prefect's update refuses the field, and keeps the owner anyway.
        owner_resource=owner_resource(task_flow.id) if owned else None,
    )


async def set_alert(
    prefect: PrefectClient,
    task_flow: TaskFlow,
    *,
    webhook_url: str,
    on: list[str],
    page_url: str,
    prefect_ui_url: str,
    enabled: bool = True,
) -> Alert:
    """Create or replace the task flow's alert; return it as Prefect has it."""
    block = CustomWebhookNotificationBlock(
        name=block_name(task_flow.id),
        url=webhook_url,
        json_data={"subject": "{{subject}}", "text": "{{body}}"},
        headers=None,
        cookies=None,
    )
    block_document_id = await block.asave(
        block_name(task_flow.id), overwrite=True, client=prefect
    )
    existing = await _automations_of(prefect, task_flow.id)

    def wanted(owned: bool) -> AutomationCore:
        return _automation(
            task_flow,
            block_document_id,
            on,
            enabled=enabled,
            page_url=page_url,
            prefect_ui_url=prefect_ui_url,
            owned=owned,
        )

    if existing:
        update = wanted(owned=False)
        update.model_fields_set.discard("owner_resource")  # not sent at all
        await prefect.update_automation(existing[0].id, update)
        for extra in existing[1:]:  # two concurrent first PUTs made two
            await prefect.delete_automation(extra.id)
    else:
        await prefect.create_automation(wanted(owned=True))
    found = await read_alert(prefect, task_flow.id)
    assert found is not None, "the automation was just written"
    return found


async def read_alert(prefect: PrefectClient, flow_id: int) -> Alert | None:
    """The task flow's alert, or None when it has none."""
    automations = await _automations_of(prefect, flow_id)
    if not automations:
        return None
    automation = automations[0]
    webhook_url = ""
    for action in automation.actions:
        if isinstance(action, SendNotification):
            webhook_url = await _webhook_url(prefect, action.block_document_id)
            break
    trigger = automation.trigger
    expect = trigger.expect if isinstance(trigger, EventTrigger) else set()
    on = sorted({_EVENT_TO_ALERT[event] for event in expect if event in _EVENT_TO_ALERT})
    return Alert(
        automation_id=automation.id,
        name=automation.name,
        webhook_url=webhook_url,
        on=on,
        enabled=automation.enabled,
    )


async def remove_alert(prefect: PrefectClient, flow_id: int) -> bool:
    """Delete the task flow's alert and its webhook block; False when it had none."""
    automations = await _automations_of(prefect, flow_id)
    for automation in automations:
        await prefect.delete_automation(automation.id)
    try:
        block = await prefect.read_block_document_by_name(
            block_name(flow_id), block_type_slug="custom-webhook"
        )
        await prefect.delete_block_document(block.id)
    except ObjectNotFound:
        pass
    return bool(automations)


NOT_DELIVERED = (
    "Saved, but this Prefect server runs without its triggers service, so no alert is sent "
    "yet: restart it with `make up` (which turns the service on when an alert exists) or set "
    "PREFECT_SERVER_SERVICES_TRIGGERS_ENABLED=true for it."
)


async def delivery_note(prefect: PrefectClient) -> str | None:
    """None when the Prefect server runs the services that deliver alerts; else a sentence."""
    try:
        response = await prefect.request("GET", "/admin/settings")
        enabled = response.json()["server"]["services"]["triggers"]["enabled"]
    except Exception:  # an older or stricter server: say nothing rather than guess
        return None
    return None if enabled else NOT_DELIVERED


async def _automations_of(prefect: PrefectClient, flow_id: int) -> list[Automation]:
    found = await prefect.read_resource_related_automations(owner_resource(flow_id))
    return sorted(found, key=lambda automation: str(automation.id))


async def _webhook_url(prefect: PrefectClient, block_document_id: UUID) -> str:
    try:
        document = await prefect.read_block_document(block_document_id, include_secrets=True)
    except ObjectNotFound:
        return ""
    data: dict[str, Any] = document.data
    return str(data.get("url", ""))
