"""`taskflows schedule NAME ["CRON"] [--timezone TZ] [--disable] | --clear`."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from cli._output import (
    console,
    exit_with_error,
    reports_api_errors,
    schedule_time,
)
from cli._per_flow import set_show_or_clear


@reports_api_errors
def schedule(
    name: Annotated[str, typer.Argument(help="The task flow's call_name (or its id).")],
    cron: Annotated[
        str | None,
        typer.Argument(help='Cron: minute hour day month weekday, e.g. "0 9 * * 1-5".'),
    ] = None,
    timezone: Annotated[
        str, typer.Option("--timezone", "--tz", help="IANA time zone of the cron times.")
    ] = "UTC",
    disable: Annotated[
        bool, typer.Option("--disable", help="Keep the schedule but do not fire it.")
    ] = False,
    clear: Annotated[bool, typer.Option("--clear", help="Remove the schedule.")] = False,
) -> None:
    """Set, show or remove a task flow's cron schedule (kept on its Prefect deployment).

    Without CRON it shows the schedule and its next run times.
    """
    if clear and cron is not None:
        exit_with_error("Give either a CRON expression or --clear, not both.")
    set_show_or_clear(
        name,
        "schedule",
        body=None if cron is None else {"cron": cron, "timezone": timezone, "enabled": not disable},
        clear=clear,
        show=_show,
        cleared="{name} is no longer scheduled.",
        missing="{name} has no schedule.",
    )


def _show(current: dict[str, Any]) -> None:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    grid.add_row("Task flow", current["call_name"])
    if current["cron"] is not None:
        grid.add_row("Cron", current["cron"])
    elif current.get("interval_seconds") is not None:
        grid.add_row("Every", f"{current['interval_seconds']:g} s (set in the Prefect UI)")
    else:
        grid.add_row("Schedule", f"{current['kind']} (set in the Prefect UI)")
    grid.add_row("Time zone", current["timezone"])
    if current["paused"]:
        state = Text("paused in Prefect: nothing fires", style="yellow")
    elif current["enabled"]:
        state = Text("enabled", style="green")
    else:
        state = Text("disabled", style="yellow")
    grid.add_row("State", state)
    upcoming = "\n".join(schedule_time(t) for t in current["next_runs"]) or "-"
    grid.add_row("Next runs", upcoming)
    if current.get("other_schedules"):
        grid.add_row("Note", f"{current['other_schedules']} more schedule(s) set in Prefect")
    grid.add_row("Prefect", current["prefect_url"])
    console.print(grid)
