"""Scheduled prompts on Prefect: one deployment with one cron schedule per scheduled prompt.

A scheduled prompt (`flows/scheduled_prompt_store.py`) says "send this prompt to this agent
at 09:00 on Monday and Friday, Berlin time". It becomes the deployment
`taskflow/scheduled-prompt-<id>` of the same flow as the task flows, with the parameter
`{"scheduled_prompt_id": id}` and the cron schedule `0 9 * * 1,5` in Europe/Berlin.
Prefect's scheduler creates the flow runs, the worker runs them, and the flow records each
as an execution with `trigger = "schedule"`. `enabled = false` makes the schedule inactive
(paused in the Prefect UI); no weekday chosen means no schedule at all.

The table is the source of truth (the old UI edits it): after every write and at start-up
the deployment is made to match the row.
"""

from __future__ import annotations

import logging
import re
from typing import Any
from uuid import UUID

from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.actions import DeploymentScheduleCreate
from prefect.client.schemas.filters import (
    FlowFilter,
    FlowFilterName,
    WorkPoolFilter,
    WorkPoolFilterName,
)
from prefect.client.schemas.responses import DeploymentResponse
from prefect.client.schemas.schedules import CronSchedule
from prefect.exceptions import ObjectNotFound
from prefect.utilities.callables import parameter_schema

from deployments.sync import ENTRYPOINT, ensure_work_pool
from flows.scheduled_prompt_store import ScheduledPrompt, ScheduledPromptStore
from flows.settings import PROJECT_ROOT, get_settings
from flows.taskflow import FLOW_NAME, run_task_flow

logger = logging.getLogger(__name__)

PARAMETER = "scheduled_prompt_id"
DAY_NAMES = ("Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat")  # the old UI's order
_TIME = re.compile(r"^([01]?[0-9]|2[0-3]):([0-5][0-9])$")


def parse_time_of_day(text: str) -> tuple[int, int]:
    """(hour, minute) of "HH:MM" (24-hour); a ValueError phrase otherwise."""
    match = _TIME.match(text.strip())
    if match is None:
        raise ValueError(f"must be a time of day such as '09:00' (HH:MM, 24-hour); got {text!r}")
    return int(match[1]), int(match[2])


def cron_of(time_of_day: str, days_of_week: list[bool]) -> str | None:
    """The cron expression for a time on weekdays (Sunday first, as cron counts them);
    None when no day is chosen (it never fires)."""
    hour, minute = parse_time_of_day(time_of_day)
    days = [str(number) for number, chosen in enumerate(days_of_week[:7]) if chosen is True]
    return f"{minute} {hour} * * {','.join(days)}" if days else None


def deployment_name(prompt_id: int) -> str:
    return f"scheduled-prompt-{prompt_id}"


def is_scheduled_prompt_deployment(deployment: DeploymentResponse) -> bool:
    return PARAMETER in (deployment.parameters or {})


def _cron_or_none(row: ScheduledPrompt) -> str | None:
    """The row's cron, or None (with a warning) for a row the old system let through."""
    try:
        return cron_of(row.time_of_day or "", row.weekdays)
    except ValueError:
        logger.warning(
            "Scheduled prompt %s has the time %r, not HH:MM; it is not scheduled.",
            row.id,
            row.time_of_day,
        )
        return None


def _wanted_schedules(row: ScheduledPrompt) -> list[DeploymentScheduleCreate]:
    cron = _cron_or_none(row)
    if cron is None:
        return []
    return [
        DeploymentScheduleCreate(
            schedule=CronSchedule(cron=cron, timezone=row.timezone),
            active=bool(row.enabled),
            parameters={PARAMETER: row.id},
        )
    ]


def _tags(row: ScheduledPrompt) -> list[str]:
    return ["taskflows", "scheduled-prompt", f"agent:{row.agent}"]


def _description(row: ScheduledPrompt) -> str:
    prompt = " ".join((row.prompt or "").split())
    return f"Scheduled prompt {row.id}: {prompt[:200]}"


async def sync_scheduled_prompt(
    prefect: PrefectClient, store: ScheduledPromptStore, row: ScheduledPrompt
) -> UUID:
    """Create or update the scheduled prompt's deployment and schedule; its id.

    Prefect's deployment upsert replaces the schedules and drops the runs the old ones had
    queued, so an edit never leaves a run at the old time behind.
    """
    flow_id = await prefect.create_flow_from_name(FLOW_NAME)
    arguments: dict[str, Any] = dict(
        name=deployment_name(row.id),
        work_pool_name=get_settings().work_pool,
        entrypoint=ENTRYPOINT,
        path=str(PROJECT_ROOT),
        parameters={PARAMETER: row.id},
        parameter_openapi_schema=parameter_schema(run_task_flow).model_dump_for_openapi(),
        tags=_tags(row),
        description=_description(row),
        schedules=_wanted_schedules(row),
    )
    try:
        deployment_id = await prefect.create_deployment(flow_id=flow_id, **arguments)
    except ObjectNotFound:  # a fresh Prefect server has no work pool until someone makes it
        await ensure_work_pool(prefect)
        deployment_id = await prefect.create_deployment(flow_id=flow_id, **arguments)
    if row.deployment_id != deployment_id:
        await store.set_deployment_id(row.id, deployment_id)
    return deployment_id


async def remove_scheduled_prompt_deployment(prefect: PrefectClient, row: ScheduledPrompt) -> None:
    """Delete the deployment (and the runs it had queued) of a deleted scheduled prompt."""
    if row.deployment_id is None:
        return
    try:
        await prefect.delete_deployment(row.deployment_id)
    except ObjectNotFound:
        pass


def _in_step(deployment: DeploymentResponse, row: ScheduledPrompt) -> bool:
    """Does the deployment already say what the row says?"""
    wanted = [
        (
            getattr(s.schedule, "cron", None),
            getattr(s.schedule, "timezone", None),
            s.active,
            s.parameters,
        )
        for s in _wanted_schedules(row)
    ]
    current = [
        (
            getattr(s.schedule, "cron", None),
            getattr(s.schedule, "timezone", None),
            s.active,
            dict(s.parameters or {}),
        )
        for s in deployment.schedules
    ]
    return (
        current == wanted
        and sorted(deployment.tags) == sorted(_tags(row))
        and deployment.description == _description(row)
    )


async def sync_all_scheduled_prompts(
    prefect: PrefectClient, store: ScheduledPromptStore
) -> dict[str, int]:
    """Give every scheduled prompt its live schedule and remove the deployments of deleted
    ones (what a worker does at start-up, so a database taken over from the old system
    gets its schedules). Only what is missing or out of date is written."""
    await ensure_work_pool(prefect)
    deployments = await prefect.read_deployments(
        flow_filter=FlowFilter(name=FlowFilterName(any_=[FLOW_NAME])),
        work_pool_filter=WorkPoolFilter(name=WorkPoolFilterName(any_=[get_settings().work_pool])),
    )
    by_prompt = {
        deployment.parameters[PARAMETER]: deployment
        for deployment in deployments
        if is_scheduled_prompt_deployment(deployment)
    }
    synced = removed = 0
    rows = await store.list_scheduled_prompts()
    for row in rows:
        current = by_prompt.get(row.id)
        if current is None or not _in_step(current, row) or row.deployment_id != current.id:
            await sync_scheduled_prompt(prefect, store, row)
            synced += 1
    kept = {row.id for row in rows}
    for prompt_id, deployment in by_prompt.items():
        if prompt_id not in kept and await store.find_scheduled_prompt(prompt_id) is None:
            try:
                await prefect.delete_deployment(deployment.id)
            except ObjectNotFound:
                pass
            removed += 1
    return {"synced": synced, "removed": removed}
