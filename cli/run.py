"""`taskflows run NAME [--follow]`: start a run of a task flow."""

from __future__ import annotations

from typing import Annotated

import typer

from cli._api import ApiClient
from cli._follow import exit_with_outcome, follow_execution
from cli._output import console, find_task_flow, reports_api_errors


@reports_api_errors
def run(
    name: Annotated[str, typer.Argument(help="The task flow's call_name (or its id).")],
    follow: Annotated[
        bool,
        typer.Option(
            "--follow",
            "-f",
            help="Show progress and each response as it arrives; exit 0 only if it completes.",
        ),
    ] = False,
    idempotency_key: Annotated[
        str | None,
        typer.Option(help="Repeating a key returns the run it started instead of a new one."),
    ] = None,
) -> None:
    """Run a task flow now (recorded with trigger `cli`)."""
    with ApiClient() as api:
        task_flow = find_task_flow(api, name)
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        started = api.post(
            f"/api/task_flows/{task_flow['id']}/run", {"trigger": "cli"}, headers=headers
        )
        console.print(
            f"Started execution {started['execution_id']} of {task_flow['call_name']!r} "
            f"(flow run {started['flow_run_id']})."
        )
        if not follow:
            console.print(
                f"Follow it with `taskflows executions show {started['execution_id']}`."
            )
            return
        exit_with_outcome(follow_execution(api, started["execution_id"]))
