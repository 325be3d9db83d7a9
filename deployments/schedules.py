"""The cron schedule of a task flow, kept where Prefect keeps it: on the task flow's deployment.

Prefect is the source of truth, so a schedule edited in the Prefect UI is what
`read_schedule` returns. A task flow has at most one schedule; `set_schedule` replaces
whatever schedules the deployment had with one cron schedule whose parameters are
`{"flow_id": <id>}`. Prefect's scheduler then creates the flow runs, the worker runs them,
and the flow records each as an execution with `trigger = "schedule"`. Example::

    schedule = await set_schedule(prefect, deployment_id, flow_id=3, cron="0 9 * * 1-5",
                                  timezone="Europe/Berlin")
    schedule.next_runs  # the next five times, in Europe/Berlin
"""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.actions import (
    DeploymentScheduleCreate,
    DeploymentScheduleUpdate,
    DeploymentUpdate,
)
from prefect.client.schemas.objects import DeploymentSchedule
from prefect.client.schemas.responses import DeploymentResponse
from prefect.client.schemas.schedules import CronSchedule, IntervalSchedule, RRuleSchedule
from prefect.exceptions import ObjectNotFound

from flows.errors import ConflictError

NEXT_RUNS = 5
# Cron's shorthands, as croniter (and so Prefect's scheduler) understands them.
_CRON_MACROS = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
_CRON_FIELDS = "minute hour day-of-month month day-of-week"


def check_cron(cron: str) -> str:
    """`cron` if Prefect's scheduler can use it; otherwise a ValueError whose message is a
    phrase that follows the field's name ("cron must have 5 fields ...")."""
    cron = " ".join(cron.split())
    fields = cron.split(" ")
    if not cron:
        raise ValueError(f"must be a cron expression such as '0 9 * * 1-5' ({_CRON_FIELDS})")
    if len(fields) == 1 and fields[0].lower() in _CRON_MACROS:
        return cron.lower()
    if len(fields) != 5:
        raise ValueError(
            f"must have 5 fields ({_CRON_FIELDS}), such as '0 9 * * 1-5'; "
            f"{cron[:60]!r} has {len(fields)}"
        )
    try:
        CronSchedule(cron=cron)
    except ValueError:
        raise ValueError(
            f"is not a valid cron expression: {cron!r} (fields: {_CRON_FIELDS}, "
            "e.g. '*/15 * * * *' for every 15 minutes)"
        ) from None
    return cron


def check_timezone(timezone: str) -> str:
    """`timezone` if it is an IANA time zone Prefect accepts; otherwise a ValueError phrase."""
    timezone = timezone.strip()
    try:
        CronSchedule(cron="* * * * *", timezone=timezone)
        zoneinfo.ZoneInfo(timezone)
    except (ValueError, zoneinfo.ZoneInfoNotFoundError):
        raise ValueError(
            f"must be an IANA time zone such as 'UTC' or 'Europe/Berlin' (got {timezone[:60]!r})"
        ) from None
    return timezone


@dataclass(frozen=True)
class TaskFlowSchedule:
    """A deployment's schedule as Prefect has it, with the next times it fires."""

    deployment_id: UUID
    schedule_id: UUID
    kind: str  # "cron"; "interval", "rrule" or "none" only come from the Prefect UI
    timezone: str
    enabled: bool  # the schedule is active in Prefect
    paused: bool  # the whole deployment is paused in Prefect: nothing fires
    cron: str | None = None
    interval_seconds: float | None = None
    rrule: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    next_runs: list[datetime] = field(default_factory=list)
    # Schedules beyond the first (added in the Prefect UI); PUT replaces them all.
    other_schedules: int = 0


async def read_schedule(prefect: PrefectClient, deployment_id: UUID) -> TaskFlowSchedule | None:
    """The deployment's schedule, or None when it has none (or the deployment is gone)."""
    try:
        deployment = await prefect.read_deployment(deployment_id)
    except ObjectNotFound:
        return None
    return await schedule_of(deployment)


async def list_schedules(
    prefect: PrefectClient, deployment_ids: list[UUID]
) -> dict[UUID, TaskFlowSchedule]:
    """The schedules of these deployments, in one Prefect request; unscheduled ones omitted."""
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    if not deployment_ids:
        return {}
    deployments = await prefect.read_deployments(
        deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=deployment_ids))
    )
    found = {}
    for deployment in deployments:
        schedule = await schedule_of(deployment)
        if schedule is not None:
            found[deployment.id] = schedule
    return found


async def schedule_of(deployment: DeploymentResponse) -> TaskFlowSchedule | None:
    """The first schedule of a deployment (Prefect lists the latest updated first)."""
    if not deployment.schedules:
        return None
    first = deployment.schedules[0]
    spec = first.schedule
    enabled, paused = bool(first.active), bool(deployment.paused)
    return TaskFlowSchedule(
        deployment_id=deployment.id,
        schedule_id=first.id,
        kind=_kind(spec),
        timezone=getattr(spec, "timezone", None) or "UTC",
        enabled=enabled,
        paused=paused,
        cron=spec.cron if isinstance(spec, CronSchedule) else None,
        interval_seconds=(
            spec.interval.total_seconds() if isinstance(spec, IntervalSchedule) else None
        ),
        rrule=spec.rrule if isinstance(spec, RRuleSchedule) else None,
        parameters=dict(first.parameters or {}),
        next_runs=await next_run_times(first) if enabled and not paused else [],
        other_schedules=len(deployment.schedules) - 1,
    )


async def next_run_times(schedule: DeploymentSchedule, n: int = NEXT_RUNS) -> list[datetime]:
    """The next `n` times the schedule fires, in its own time zone.

    Computed with the classes Prefect's scheduler uses, so daylight-saving rules are the
    same; computing beats reading scheduled flow runs, which exist only once the
    scheduler's next pass has made them.
    """
    from prefect.server.schemas import schedules as server_schedules

    spec = schedule.schedule
    server_class = getattr(server_schedules, type(spec).__name__, None)
    if server_class is None or not hasattr(server_class, "get_dates"):
        return []  # NoSchedule: never fires
    dates = await server_class.model_validate(spec.model_dump()).get_dates(
        n=n, start=datetime.now(UTC)
    )
    zone = zoneinfo.ZoneInfo(getattr(spec, "timezone", None) or "UTC")
    return [datetime.fromtimestamp(date.timestamp(), zone) for date in dates]


async def set_schedule(
    prefect: PrefectClient,
    deployment_id: UUID,
    *,
    flow_id: int,
    cron: str,
    timezone: str = "UTC",
    enabled: bool = True,
) -> TaskFlowSchedule:
    """Make one cron schedule the deployment's only schedule; return it as Prefect has it.

    One PATCH of the deployment replaces its schedules and drops the runs the old ones had
    queued; it also marks the deployment updated, so Prefect's scheduler plans the new
    runs within seconds instead of at its next full pass.
    """
    existing = await prefect.read_deployment_schedules(deployment_id)
    # Prefect refuses a schedule without a slug when every existing one has a slug (as
    # `prefect deploy` makes them); deleting those first keeps PUT a plain replacement.
    if existing and all(old.slug for old in existing):
        for old in existing:
            await _delete_schedule(prefect, deployment_id, old.id)
    new = DeploymentScheduleUpdate(
        schedule=CronSchedule(cron=cron, timezone=timezone),
        active=enabled,
        parameters={"flow_id": flow_id},
    )
    await prefect.update_deployment(deployment_id, DeploymentUpdate(schedules=[new]))
    found = await read_schedule(prefect, deployment_id)
    if found is None:  # removed at the same moment by someone else
        raise ConflictError("The schedule was removed while it was being set; try again.")
    return found


async def clear_schedule(prefect: PrefectClient, deployment_id: UUID) -> int:
    """Delete every schedule of the deployment (and the runs they queued); how many."""
    try:
        existing = await prefect.read_deployment_schedules(deployment_id)
    except ObjectNotFound:
        return 0
    for schedule in existing:
        await _delete_schedule(prefect, deployment_id, schedule.id)
    return len(existing)


async def schedules_to_keep(
    prefect: PrefectClient, deployment_id: UUID | None
) -> list[DeploymentScheduleCreate]:
    """The deployment's schedules, to hand to `create_deployment` when it is re-created.

    Prefect's deployment upsert replaces the schedules with the ones it is given (none, by
    default): a sync that does not pass these back would silently unschedule the task
    flow, and a rename (a new deployment) would lose them.
    """
    if deployment_id is None:
        return []
    try:
        existing = await prefect.read_deployment_schedules(deployment_id)
    except ObjectNotFound:
        return []
    return [
        DeploymentScheduleCreate(
            schedule=schedule.schedule,
            active=schedule.active,
            max_scheduled_runs=schedule.max_scheduled_runs,
            parameters=schedule.parameters,
            slug=schedule.slug,
        )
        for schedule in existing
    ]


async def _delete_schedule(prefect: PrefectClient, deployment_id: UUID, schedule_id: UUID) -> None:
    try:
        await prefect.delete_deployment_schedule(deployment_id, schedule_id)
    except ObjectNotFound:
        pass  # already gone


def _kind(spec: object) -> str:
    if isinstance(spec, CronSchedule):
        return "cron"
    if isinstance(spec, IntervalSchedule):
        return "interval"
    return "rrule" if isinstance(spec, RRuleSchedule) else "none"
