"""Failure alerts, the Prefect way: a Prefect automation that posts to a webhook when a run
fails, is cancelled, or is late (a scheduled run that did not start on time). An alert
watches one task flow's runs, or every run (`ALL_RUNS`).

The automation is an ordinary one, visible and editable on the Prefect UI's Automations
page: an event trigger on flow-run events, matched by a tag the runs carry (`task-flow:<id>`
for one task flow, `taskflows` for all: every deployment gives its runs both), and a "send
notification" action through a Custom Webhook notification block. Prefect renders the
message and posts it as JSON::

    {"subject": "taskflows: hello #12 failed",
     "text": "Task flow: hello\\nExecution: 12\\nState: Failed\\nError: ...\\n
              Page: http://127.0.0.1:8000/#execution-12\\nPrefect UI: http://.../flow-run/..."}

Prefect is the source of truth: the automation is found by the resource it is owned by
(`taskflows.task-flow.<id>`, or `taskflows.all-runs`), so a renamed task flow keeps its
alert, and a change made in the Prefect UI is what `read_alert` answers. Alerts need the
Prefect server's `triggers` service (which also runs the actions), and `late_runs` for late
alerts.
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


@dataclass(frozen=True)
class AlertScope:
    """Which runs an alert watches (those tagged `tag`) and the names it goes by in Prefect."""

    tag: str
    # The resource the automation is owned by: how it is found again.
    owner_resource: str
    block_name: str
    automation_name: str
    # "a run of task flow 'hello' (id 3)": completes "Posts to a webhook when ..."
    runs: str
    api_path: str


def task_flow_scope(task_flow: TaskFlow) -> AlertScope:
    return AlertScope(
        tag=task_flow_tag(task_flow.id),
        owner_resource=f"taskflows.task-flow.{task_flow.id}",
        block_name=f"taskflows-alert-{task_flow.id}",
        automation_name=f"taskflows alert: {task_flow.call_name}",
        runs=f"a run of task flow {task_flow.call_name!r} (id {task_flow.id})",
        api_path=f"/api/task_flows/{task_flow.id}/alerts",
    )


# Every taskflows run: `deployment_tags` (deployments/sync.py) gives every deployment, and
# so every run, the `taskflows` tag.
ALL_RUNS = AlertScope(
    tag="taskflows",
    owner_resource="taskflows.all-runs",
    block_name="taskflows-alert-all",
    automation_name="taskflows alert: all task flows",
    runs="any taskflows run",
    api_path="/api/alerts",
)


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
    scope: AlertScope,
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
        name=scope.automation_name,
        description=(
            f"Posts to a webhook when {scope.runs} is {' or '.join(on)}. "
            f"Managed by taskflows: PUT/DELETE {scope.api_path}."
        ),
        enabled=enabled,
        trigger=EventTrigger(
            expect=expect,
            match={"prefect.resource.id": "prefect.flow-run.*"},
            match_related={
                "prefect.resource.role": "tag",
                "prefect.resource.id": f"prefect.tag.{scope.tag}",
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
        owner_resource=scope.owner_resource if owned else None,
    )


async def set_alert(
    prefect: PrefectClient,
    scope: AlertScope,
    *,
    webhook_url: str,
    on: list[str],
    page_url: str,
    prefect_ui_url: str,
    enabled: bool = True,
) -> Alert:
    """Create or replace the scope's alert; return it as Prefect has it."""
    block = CustomWebhookNotificationBlock(
        name=scope.block_name,
        url=webhook_url,
        json_data={"subject": "{{subject}}", "text": "{{body}}"},
        headers=None,
        cookies=None,
    )
    block_document_id = await block.asave(scope.block_name, overwrite=True, client=prefect)
    existing = await _automations_of(prefect, scope)

    def wanted(owned: bool) -> AutomationCore:
        return _automation(
            scope,
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
    found = await read_alert(prefect, scope)
    assert found is not None, "the automation was just written"
    return found


async def read_alert(prefect: PrefectClient, scope: AlertScope) -> Alert | None:
    """The scope's alert, or None when it has none."""
    automations = await _automations_of(prefect, scope)
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


async def remove_alert(prefect: PrefectClient, scope: AlertScope) -> bool:
    """Delete the scope's alert and its webhook block; False when it had none."""
    automations = await _automations_of(prefect, scope)
    for automation in automations:
        await prefect.delete_automation(automation.id)
    try:
        block = await prefect.read_block_document_by_name(
            scope.block_name, block_type_slug="custom-webhook"
        )
        await prefect.delete_block_document(block.id)
    except ObjectNotFound:
        pass
    return bool(automations)


async def _automations_of(prefect: PrefectClient, scope: AlertScope) -> list[Automation]:
    found = await prefect.read_resource_related_automations(scope.owner_resource)
    return sorted(found, key=lambda automation: str(automation.id))


async def _webhook_url(prefect: PrefectClient, block_document_id: UUID) -> str:
    try:
        document = await prefect.read_block_document(block_document_id, include_secrets=True)
    except ObjectNotFound:
        return ""
    data: dict[str, Any] = document.data
    return str(data.get("url", ""))
