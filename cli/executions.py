"""`taskflows executions ...`: list, show, cancel and retry the runs of task flows."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from cli._api import ApiClient
from cli._follow import exit_with_outcome, follow_execution
from cli._output import (
    console,
    duration,
    excerpt,
    exit_with_success,
    local_time,
    plain,
    reports_api_errors,
    status_text,
)

app = typer.Typer(
    name="executions", help="Inspect, cancel and retry executions.", no_args_is_help=True
)

ExecutionId = Annotated[int, typer.Argument(help="The execution's id.", min=1)]
Follow = Annotated[
    bool,
    typer.Option("--follow", "-f", help="Show progress until it ends; exit 1 unless it completes."),
]


def _progress(execution: dict[str, Any]) -> str:
    return f"{execution['current_prompt_index']}/{execution['total_prompts']}"


@app.command("list")
@reports_api_errors
def list_executions(
    active: Annotated[bool, typer.Option("--active", help="Only queued and running ones.")] = False,
    limit: Annotated[
        int, typer.Option("--limit", "-n", min=1, max=500, help="How many (newest first).")
    ] = 20,
) -> None:
    """List the newest executions (or the active ones)."""
    with ApiClient() as api:
        if active:
            executions = api.get("/api/executions/active")
        else:
            # Summaries: a list needs no answers (`show` fetches them for one execution).
            executions = api.get("/api/executions/recent", limit=limit, results="false")
    table = Table(title="Active executions" if active else "Recent executions", expand=True)
    table.add_column("ID", style="cyan", no_wrap=True)
    table.add_column("Task flow", style="blue", no_wrap=True, ratio=25)
    table.add_column("Status", no_wrap=True)
    table.add_column("Progress", justify="right", no_wrap=True)
    table.add_column("Trigger", no_wrap=True)
    table.add_column("Started", no_wrap=True)
    table.add_column("Took", justify="right", no_wrap=True)
    table.add_column("Error", style="red", ratio=35)
    for execution in executions:
        table.add_row(
            str(execution["id"]),
            execution["call_name"],
            status_text(execution["status"]),
            _progress(execution),
            execution["trigger"],
            local_time(execution["started_at"]),
            duration(execution["started_at"], execution["completed_at"]),
            excerpt(execution["error"], 80),
        )
    console.print(table)


@app.command("show")
@reports_api_errors
def show_execution(execution_id: ExecutionId) -> None:
    """Show one execution: its status, error and every prompt's result."""
    with ApiClient() as api:
        execution = api.get(f"/api/executions/{execution_id}")
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    grid.add_row("Execution", str(execution["id"]))
    grid.add_row("Task flow", f"{execution['call_name']} (id {execution['flow_id']})")
    grid.add_row("Agent", execution["agent"])
    grid.add_row("Status", status_text(execution["status"]))
    grid.add_row("Progress", _progress(execution))
    grid.add_row("Trigger", execution["trigger"])
    if execution.get("retry_of"):
        grid.add_row("Retry of", str(execution["retry_of"]))
    grid.add_row("Started", local_time(execution["started_at"]))
    grid.add_row("Completed", local_time(execution["completed_at"]))
    grid.add_row("Took", duration(execution["started_at"], execution["completed_at"]))
    if execution["error"]:
        grid.add_row("Error", Text(plain(execution["error"]), style="red"))
    if execution.get("prefect_url"):
        grid.add_row("Prefect", execution["prefect_url"])
    console.print(grid)
    results = Table(title="Prompt results", show_lines=True, expand=True)
    results.add_column("#", style="cyan", justify="right")
    results.add_column("Prompt", ratio=35)
    results.add_column("Response", ratio=55)
    results.add_column("Took", justify="right", no_wrap=True)
    for position, result in enumerate(execution["prompt_results"]):
        answer = (
            Text(plain(result.get("response") or ""))
            if result.get("success")
            else Text(plain(result.get("error") or "failed"), style="red")
        )
        results.add_row(
            # Results adopted from the old system have no index: their place is their index.
            str(result.get("index", position) + 1),
            Text(plain(result.get("prompt") or "")),
            answer,
            duration(result.get("started_at"), result.get("finished_at")),
        )
    console.print(results)


@app.command("cancel")
@reports_api_errors
def cancel_execution(execution_id: ExecutionId) -> None:
    """Cancel a queued or running execution."""
    with ApiClient() as api:
        execution = api.post(f"/api/executions/{execution_id}/cancel")
    exit_with_success(f"Execution {execution['id']} is {execution['status']}.")


@app.command("retry")
@reports_api_errors
def retry_execution(execution_id: ExecutionId, follow: Follow = False) -> None:
    """Resume a failed or cancelled execution at its first unfinished prompt."""
    with ApiClient() as api:
        retried = api.post(f"/api/executions/{execution_id}/retry")
        console.print(
            f"Execution {retried['execution_id']} resumes execution {execution_id} "
            f"(status {retried['status']})."
        )
        if follow:
            exit_with_outcome(follow_execution(api, retried["execution_id"]))
