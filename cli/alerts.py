"""`taskflows alert NAME [WEBHOOK_URL] [--on failed,cancelled,late] [--disable] | --clear`."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from cli._output import (
    console,
    exit_with_error,
    reports_api_errors,
)
from cli._per_flow import set_show_or_clear


@reports_api_errors
def alert(
    name: Annotated[str, typer.Argument(help="The task flow's call_name (or its id).")],
    webhook_url: Annotated[
        str | None, typer.Argument(help="Where to post the alert, e.g. a Slack webhook URL.")
    ] = None,
    on: Annotated[
        str,
        typer.Option(help="When to alert: failed, cancelled, late (comma-separated)."),
    ] = "failed",
    disable: Annotated[
        bool, typer.Option("--disable", help="Keep the alert but do not send it.")
    ] = False,
    clear: Annotated[bool, typer.Option("--clear", help="Remove the alert.")] = False,
) -> None:
    """Set, show or remove a task flow's alert (a Prefect automation posting to a webhook).

    Without WEBHOOK_URL it shows the alert.
    """
    if clear and webhook_url is not None:
        exit_with_error("Give either a WEBHOOK_URL or --clear, not both.")
    events = [event.strip() for event in on.split(",") if event.strip()]
    set_show_or_clear(
        name,
        "alerts",
        body=None
        if webhook_url is None
        else {"webhook_url": webhook_url, "on": events, "enabled": not disable},
        clear=clear,
        show=_show,
        cleared="{name} no longer sends alerts.",
        missing="{name} has no alert.",
    )


def _show(current: dict[str, Any]) -> None:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    grid.add_row("Task flow", current["call_name"])
    grid.add_row("Webhook", current["webhook_url"])
    grid.add_row("On", ", ".join(current["on"]))
    grid.add_row(
        "State",
        Text("enabled", style="green") if current["enabled"] else Text("disabled", style="yellow"),
    )
    grid.add_row("Automation", current["automation_name"])
    grid.add_row("Prefect", current["prefect_url"])
    if current.get("note"):
        grid.add_row("Note", Text(current["note"], style="yellow"))
    console.print(grid)
