"""`taskflows alert NAME [WEBHOOK_URL] [--on failed,cancelled,late] [--disable] | --clear`,
and `taskflows alert --all [WEBHOOK_URL] ...` for every run."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from cli._api import ApiClient, ApiError
from cli._output import (
    console,
    exit_with_error,
    exit_with_success,
    reports_api_errors,
)
from cli._per_flow import set_show_or_clear


@reports_api_errors
def alert(
    name: Annotated[
        str | None,
        typer.Argument(
            help="The task flow's call_name (or its id). With --all, leave it out.",
            show_default=False,
        ),
    ] = None,
    webhook_url: Annotated[
        str | None, typer.Argument(help="Where to post the alert, e.g. a Slack webhook URL.")
    ] = None,
    all_runs: Annotated[
        bool,
        typer.Option("--all", help="The alert for every run of every task flow."),
    ] = False,
    on: Annotated[
        str,
        typer.Option(help="When to alert: failed, cancelled, late (comma-separated)."),
    ] = "failed",
    disable: Annotated[
        bool, typer.Option("--disable", help="Keep the alert but do not send it.")
    ] = False,
    clear: Annotated[bool, typer.Option("--clear", help="Remove the alert.")] = False,
) -> None:
    """Set, show or remove an alert (a Prefect automation posting to a webhook) for a task
    flow's runs, or with --all for every run.

    Without WEBHOOK_URL it shows the alert.
    """
    if all_runs:
        # `taskflows alert --all URL`: the only argument given is the webhook.
        if webhook_url is not None:
            exit_with_error("With --all, give only the WEBHOOK_URL, not a task flow's name.")
        name, webhook_url = None, name
    elif name is None:
        exit_with_error("Name a task flow, or give --all for every run.")
    if clear and webhook_url is not None:
        exit_with_error("Give either a WEBHOOK_URL or --clear, not both.")
    events = [event.strip() for event in on.split(",") if event.strip()]
    body = (
        None
        if webhook_url is None
        else {"webhook_url": webhook_url, "on": events, "enabled": not disable}
    )
    if name is None:
        _all_runs(body, clear=clear)
        return
    set_show_or_clear(
        name,
        "alerts",
        body=body,
        clear=clear,
        show=_show,
        cleared="{name} no longer sends alerts.",
        missing="{name} has no alert.",
    )


def _all_runs(body: dict[str, Any] | None, *, clear: bool) -> None:
    """Set (`body`), show (None) or clear the alert for every run."""
    with ApiClient() as api:
        if clear:
            api.delete("/api/alerts")
            exit_with_success("No alert is sent for all runs any more.")
        if body is not None:
            _show(api.put("/api/alerts", body))
            return
        try:
            current = api.get("/api/alerts")
        except ApiError as exc:
            if exc.status != 404:
                raise
            exit_with_success("There is no alert for all runs.")
        _show(current)


def _show(current: dict[str, Any]) -> None:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    grid.add_row("Task flow", current.get("call_name") or "all")
    grid.add_row("Webhook", current["webhook_url"])
    grid.add_row("On", ", ".join(current["on"]))
    grid.add_row(
        "State",
        Text("enabled", style="green") if current["enabled"] else Text("disabled", style="yellow"),
    )
    grid.add_row("Automation", current["automation_name"])
    grid.add_row("Prefect", current["prefect_url"])
    console.print(grid)
