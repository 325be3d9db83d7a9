"""Scheduled prompts: `/api/scheduled_prompts`, the old system's endpoints and shapes.

A scheduled prompt sends one prompt to an agent at `time_of_day` ("HH:MM") on the weekdays
marked in `days_of_week` (7 booleans, Sunday first), in `timezone` (UTC by default). Each is
a Prefect cron schedule (see `deployments/scheduled_prompts.py`); `enabled: false` pauses it.
The row is saved first; if Prefect cannot be reached, the save stands and the worker's
start-up sync gives it its schedule.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import asdict, replace
from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Path, Response
from prefect.client.orchestration import PrefectClient
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictStr,
    StringConstraints,
    field_validator,
)

from api.deps import PoolDep, PrefectDep, SettingsDep
from api.params import error_responses
from api.schemas import MAX_ID, AgentName, Deleted, Prompt
from deployments.scheduled_prompts import (
    cron_of,
    parse_time_of_day,
    remove_scheduled_prompt_deployment,
    sync_scheduled_prompt,
)
from deployments.schedules import check_timezone
from flows.prefect_links import deployment_url
from flows.scheduled_prompt_store import ScheduledPrompt, ScheduledPromptStore
from flows.settings import Settings

router = APIRouter(
    prefix="/api/scheduled_prompts",
    tags=["scheduled prompts"],
    responses=error_responses(401, 404, 422, 503),
)
logger = logging.getLogger("taskflows.api")
SYNC_TIMEOUT_S = 10.0  # a user waiting on a save should not wait on a Prefect outage

ScheduledPromptId = Annotated[int, Path(ge=1, le=MAX_ID, description="The scheduled prompt's id")]


def _time_of_day(value: str) -> str:
    hour, minute = parse_time_of_day(value)
    return f"{hour:02d}:{minute:02d}"


TimeOfDay = Annotated[
    StrictStr,
    StringConstraints(max_length=20),
    AfterValidator(_time_of_day),
    Field(examples=["09:00"], description="HH:MM, 24-hour, in `timezone`"),
]
DaysOfWeek = Annotated[
    list[StrictBool],
    Field(
        min_length=7,
        max_length=7,
        examples=[[False, True, True, True, True, True, False]],
        description="7 booleans, Sunday first: the days it is sent",
    ),
]
TimeZone = Annotated[
    StrictStr,
    StringConstraints(max_length=100),
    AfterValidator(check_timezone),
    Field(examples=["Europe/Berlin"], description="IANA time zone of `time_of_day`"),
]


class ScheduledPromptIn(BaseModel):
    """A new scheduled prompt (the old UI's body); `agent` defaults to the default agent."""

    model_config = ConfigDict(extra="forbid")

    time_of_day: TimeOfDay
    days_of_week: DaysOfWeek
    prompt: Prompt
    agent: AgentName | None = None
    enabled: bool = True
    timezone: TimeZone = "UTC"


def _no_null_in_spec(schema: dict[str, Any]) -> None:
    """Say in the spec what `_refuse_null` enforces: a field is left out, never null."""
    for field in schema.get("properties", {}).values():
        if field.get("default", ...) is None:
            del field["default"]
        branches = [b for b in field.pop("anyOf", []) if b.get("type") != "null"]
        if len(branches) == 1:
            field.update(branches[0])
        elif branches:
            field["anyOf"] = branches


class ScheduledPromptPatch(BaseModel):
    """Some fields of a scheduled prompt (the old UI's Disable sends only `enabled`)."""

    # `X | None` rather than a union with SkipJsonSchema: errors then name the field alone.
    model_config = ConfigDict(extra="forbid", json_schema_extra=_no_null_in_spec)

    time_of_day: TimeOfDay | None = None
    days_of_week: DaysOfWeek | None = None
    prompt: Prompt | None = None
    agent: AgentName | None = None
    enabled: bool | None = None
    timezone: TimeZone | None = None

    @field_validator("*", mode="before")
    @classmethod
    def _refuse_null(cls, value: object) -> object:
        if value is None:
            raise ValueError("must not be null (leave it out to keep its value)")
        return value


class ScheduledPromptOut(BaseModel):
    id: int
    time_of_day: str
    days_of_week: list[bool] = Field(description="Sunday first")
    prompt: str
    agent: str
    enabled: bool
    timezone: str
    cron: str | None = Field(description="The Prefect cron schedule; null when no day is set")
    deployment_id: UUID | None
    prefect_url: str | None = Field(description="Its deployment in the Prefect UI")
    created_at: datetime | None
    updated_at: datetime | None


class ScheduledPromptSaved(ScheduledPromptOut):
    ok: Literal[True] = True  # what the old server answered to a PUT


def to_out(row: ScheduledPrompt, settings: Settings) -> dict[str, Any]:
    try:
        cron = cron_of(row.time_of_day or "", row.weekdays)
    except ValueError:  # a row the old system let through; shown, never scheduled
        cron = None
    ui = settings.resolved_prefect_ui_url()
    return {
        **asdict(row),
        "days_of_week": row.weekdays,
        "cron": cron,
        "prefect_url": deployment_url(ui, row.deployment_id) if row.deployment_id else None,
    }


async def _synced(
    prefect: PrefectClient, store: ScheduledPromptStore, row: ScheduledPrompt
) -> ScheduledPrompt:
    """The row with its deployment, brought in step with Prefect; never fails the save."""
    try:
        async with asyncio.timeout(SYNC_TIMEOUT_S):
            deployment_id = await sync_scheduled_prompt(prefect, store, row)
    except Exception as exc:  # the row is saved; the worker's start-up sync repairs it
        logger.warning("Saved scheduled prompt %s but could not schedule it: %r", row.id, exc)
        return row
    return replace(row, deployment_id=deployment_id)


@router.get("")
async def list_scheduled_prompts(pool: PoolDep, settings: SettingsDep) -> list[ScheduledPromptOut]:
    """Every scheduled prompt, newest first."""
    rows = await ScheduledPromptStore(pool).list_scheduled_prompts()
    return [ScheduledPromptOut.model_validate(to_out(row, settings)) for row in rows]


@router.get("/{prompt_id}")
async def read_scheduled_prompt(
    prompt_id: ScheduledPromptId, pool: PoolDep, settings: SettingsDep
) -> ScheduledPromptOut:
    row = await ScheduledPromptStore(pool).get_scheduled_prompt(prompt_id)
    return ScheduledPromptOut.model_validate(to_out(row, settings))


@router.post("", status_code=201)
async def create_scheduled_prompt(
    body: ScheduledPromptIn,
    pool: PoolDep,
    prefect: PrefectDep,
    settings: SettingsDep,
    response: Response,
) -> ScheduledPromptOut:
    """Save it and give it its Prefect schedule; answers it with its `id`."""
    store = ScheduledPromptStore(pool)
    row = await store.create_scheduled_prompt(
        **body.model_dump(exclude={"agent"}), agent=body.agent or settings.default_agent
    )
    response.headers["Location"] = f"{router.prefix}/{row.id}"
    return ScheduledPromptOut.model_validate(to_out(await _synced(prefect, store, row), settings))


@router.put("/{prompt_id}")
async def update_scheduled_prompt(
    prompt_id: ScheduledPromptId,
    body: ScheduledPromptPatch,
    pool: PoolDep,
    prefect: PrefectDep,
    settings: SettingsDep,
) -> ScheduledPromptSaved:
    """Change the fields given (the others stay) and its schedule with them."""
    store = ScheduledPromptStore(pool)
    row = await store.update_scheduled_prompt(prompt_id, body.model_dump(exclude_unset=True))
    return ScheduledPromptSaved.model_validate(to_out(await _synced(prefect, store, row), settings))


@router.delete("/{prompt_id}")
async def delete_scheduled_prompt(
    prompt_id: ScheduledPromptId, pool: PoolDep, prefect: PrefectDep
) -> Deleted:
    """Delete it and its deployment (with the runs it had queued); its history stays."""
    row = await ScheduledPromptStore(pool).delete_scheduled_prompt(prompt_id)
    try:
        async with asyncio.timeout(SYNC_TIMEOUT_S):
            await remove_scheduled_prompt_deployment(prefect, row)
    except Exception as exc:  # the row is gone; the worker's start-up sync removes it
        logger.warning("Deleted scheduled prompt %s but not its deployment: %r", prompt_id, exc)
    return Deleted(id=prompt_id)
