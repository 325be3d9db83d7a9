"""`taskflows flows ...`: list, show, create, edit, delete, import and export task flows."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import click
import typer
import yaml
from rich.table import Table
from rich.text import Text

from cli._api import ApiClient, ApiError
from cli._files import (
    FIELDS,
    TaskFlowFileError,
    dump_task_flows,
    format_of,
    load_task_flows,
    portable,
)
from cli._output import (
    console,
    err_console,
    exit_with_error,
    exit_with_success,
    find_task_flow,
    local_time,
    reports_api_errors,
    schedule_time,
)

app = typer.Typer(
    name="flows", help="Create, inspect and change task flows.", no_args_is_help=True
)

Name = Annotated[str, typer.Argument(help="The task flow's call_name (or its id).")]
Prompts = Annotated[
    list[str] | None, typer.Option("--prompt", "-p", help="A prompt; repeat for more, in order.")
]
Agent = Annotated[str | None, typer.Option("--agent", "-a", help="The agent to send prompts to.")]
Description = Annotated[str | None, typer.Option("--description", "-d", help="What it is for.")]
Format = Annotated[
    str | None,
    typer.Option("--format", "-f", help="yaml or json (default: from the file name, else yaml)."),
]


def _schedules(api: ApiClient) -> dict[int, dict[str, Any]]:
    try:
        return {s["flow_id"]: s for s in api.get("/api/schedules")}
    except ApiError as exc:
        if exc.status is None:
            raise
        return {}  # Prefect unavailable: list the task flows anyway


def _schedule_cell(schedule: dict[str, Any] | None) -> Text:
    if schedule is None:
        return Text("-", style="dim")
    what = schedule["cron"] or schedule["kind"]
    text = Text(f"{what} ({schedule['timezone']})")
    if not schedule["enabled"] or schedule["paused"]:
        text.append(" off", style="yellow")
    return text


@app.command("list")
@reports_api_errors
def list_flows() -> None:
    """List every task flow, with its schedule."""
    with ApiClient() as api:
        task_flows = api.get("/api/task_flows")
        schedules = _schedules(api) if task_flows else {}
    table = Table(title="Task flows", expand=True)
    table.add_column("ID", style="cyan", no_wrap=True)
    table.add_column("Name", style="blue", no_wrap=True, ratio=30)
    table.add_column("Agent", style="green", no_wrap=True)
    table.add_column("Prompts", justify="right")
    table.add_column("Schedule", ratio=25)
    table.add_column("Next run", no_wrap=True)
    table.add_column("Updated", no_wrap=True)
    for task_flow in task_flows:
        schedule = schedules.get(task_flow["id"])
        upcoming = schedule["next_runs"] if schedule else []
        table.add_row(
            str(task_flow["id"]),
            task_flow["call_name"],
            task_flow["agent"],
            str(len(task_flow["prompts"])),
            _schedule_cell(schedule),
            schedule_time(upcoming[0]) if upcoming else "-",
            local_time(task_flow["updated_at"]),
        )
    console.print(table)


@app.command("show")
@reports_api_errors
def show_flow(name: Name) -> None:
    """Show a task flow: its prompts, agent, schedule and deployment."""
    with ApiClient() as api:
        task_flow = find_task_flow(api, name)
        try:
            schedule = api.get(f"/api/task_flows/{task_flow['id']}/schedule")
        except ApiError as exc:
            if exc.status != 404:
                raise
            schedule = None
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    grid.add_row("Name", task_flow["call_name"])
    grid.add_row("ID", str(task_flow["id"]))
    grid.add_row("Agent", task_flow["agent"])
    grid.add_row("Description", task_flow["description"] or "-")
    grid.add_row("Version", str(task_flow["version"]))
    grid.add_row("Deployment", str(task_flow["deployment_id"] or "- (not synced yet)"))
    grid.add_row("Schedule", _schedule_cell(schedule))
    if schedule and schedule["next_runs"]:
        grid.add_row("Next runs", "\n".join(schedule_time(t) for t in schedule["next_runs"]))
    grid.add_row("Updated", local_time(task_flow["updated_at"]))
    console.print(grid)
    prompts = Table(title=f"{len(task_flow['prompts'])} prompts", show_lines=True)
    prompts.add_column("#", style="cyan", justify="right")
    prompts.add_column("Prompt")
    for number, prompt in enumerate(task_flow["prompts"], start=1):
        prompts.add_row(str(number), Text(prompt))
    console.print(prompts)


@app.command("create")
@reports_api_errors
def create_flow(
    name: Annotated[str, typer.Argument(help="The new task flow's call_name.")],
    prompts: Prompts = None,
    agent: Agent = None,
    description: Description = None,
) -> None:
    """Create a task flow from prompts given with -p (and its Prefect deployment)."""
    if not prompts:
        exit_with_error("Give at least one prompt with --prompt/-p (or use `flows import FILE`).")
    body: dict[str, Any] = {"call_name": name, "prompts": prompts}
    if agent is not None:
        body["agent"] = agent
    if description is not None:
        body["description"] = description
    with ApiClient() as api:
        created = api.post("/api/task_flows", body)
    exit_with_success(
        f"Created task flow {created['call_name']!r} (id {created['id']}, "
        f"{len(created['prompts'])} prompts, agent {created['agent']!r})."
    )


@app.command("edit")
@reports_api_errors
def edit_flow(
    name: Name,
    new_name: Annotated[str | None, typer.Option("--name", "-n", help="A new call_name.")] = None,
    agent: Agent = None,
    description: Description = None,
    prompts: Annotated[
        list[str] | None,
        typer.Option("--prompt", "-p", help="Replace ALL prompts with these (repeat, in order)."),
    ] = None,
    add_prompts: Annotated[
        list[str] | None, typer.Option("--add-prompt", help="Append a prompt (repeatable).")
    ] = None,
) -> None:
    """Change a task flow; without options, edit it as YAML in $EDITOR.

    The change is based on the version read first: if someone else saved in between,
    the API refuses it (409) instead of silently losing their change.
    """
    with ApiClient() as api:
        task_flow = find_task_flow(api, name)
        changes: dict[str, Any] = {}
        if new_name is not None:
            changes["call_name"] = new_name
        if agent is not None:
            changes["agent"] = agent
        if description is not None:
            changes["description"] = description
        if prompts or add_prompts:
            changes["prompts"] = list(prompts or task_flow["prompts"]) + list(add_prompts or [])
        if not changes:
            changes = _edit_in_editor(task_flow)
        if not changes:
            exit_with_success(f"No change to {task_flow['call_name']!r}.")
        headers = {"If-Match": f'"{task_flow["version"]}"'}
        edited = api.patch(f"/api/task_flows/{task_flow['id']}", changes, headers=headers)
    exit_with_success(
        f"Saved task flow {edited['call_name']!r} (version {edited['version']}): "
        f"changed {', '.join(changes)}."
    )


def _edit_in_editor(task_flow: dict[str, Any]) -> dict[str, Any]:
    original = portable(task_flow)
    text = click.edit(dump_task_flows([task_flow], "yaml"), extension=".yaml")
    if text is None:
        return {}
    try:
        edited = yaml.safe_load(text)
    except yaml.YAMLError:
        exit_with_error("The edited text is not valid YAML; nothing was saved.")
    if not isinstance(edited, dict):
        exit_with_error("The edited text must be a mapping of call_name, agent, ...; not saved.")
    unknown = sorted(set(edited) - set(FIELDS))
    if unknown:
        exit_with_error(f"Unknown field(s) {', '.join(unknown)}; nothing was saved.")
    return {key: value for key, value in edited.items() if original.get(key) != value}


@app.command("delete")
@reports_api_errors
def delete_flow(
    name: Name,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete a task flow and its deployment; its executions stay in the history."""
    with ApiClient() as api:
        task_flow = find_task_flow(api, name)
        if not yes and not typer.confirm(f"Delete task flow {task_flow['call_name']!r}?"):
            exit_with_error("Nothing was deleted.")
        api.delete(f"/api/task_flows/{task_flow['id']}")
    exit_with_success(
        f"Deleted task flow {task_flow['call_name']!r}; its executions stay in the history."
    )


@app.command("import")
@reports_api_errors
def import_flows(
    file: Annotated[Path, typer.Argument(help="A YAML or JSON file of one or more task flows.")],
) -> None:
    """Create or update task flows from a file, matched by call_name."""
    try:
        items = load_task_flows(file)
    except TaskFlowFileError as exc:
        exit_with_error(str(exc))
    failed = 0
    with ApiClient() as api:
        existing = {t["call_name"]: t for t in api.get("/api/task_flows")}
        for item in items:
            unknown = sorted(set(item) - set(FIELDS) - {"id", "version"})
            if unknown:
                err_console.print(
                    Text(f"{item['call_name']}: ignoring {', '.join(unknown)}", style="yellow")
                )
            body = {field: item[field] for field in FIELDS if field in item}
            try:
                outcome = _import_one(api, existing.get(str(item["call_name"])), body)
            except ApiError as exc:
                failed += 1
                err_console.print(Text(f"{item['call_name']}: {exc}", style="red"))
                continue
            console.print(f"{outcome} {item['call_name']!r}")
    if failed:
        exit_with_error(f"{failed} of {len(items)} task flows could not be imported.")
    exit_with_success(f"Imported {len(items)} task flow{'s' * (len(items) != 1)} from {file}.")


def _import_one(api: ApiClient, current: dict[str, Any] | None, body: dict[str, Any]) -> str:
    if current is None:
        api.post("/api/task_flows", body)
        return "created"
    if all(current.get(field) == value for field, value in body.items()):
        return "unchanged"
    # A whole replacement (fields left out of the file take their defaults), based on the
    # version just read.
    api.put(f"/api/task_flows/{current['id']}", {**body, "version": current["version"]})
    return "updated"


@app.command("export")
@reports_api_errors
def export_flows(
    name: Annotated[
        str | None, typer.Argument(help="The task flow to export (default: all of them).")
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to this file, not stdout.")
    ] = None,
    fmt: Format = None,
) -> None:
    """Write task flows as YAML or JSON, ready for `flows import`."""
    fmt = format_of(output, fmt)
    if fmt not in ("yaml", "json"):
        exit_with_error(f"--format must be yaml or json, not {fmt!r}.")
    with ApiClient() as api:
        task_flows = [find_task_flow(api, name)] if name else api.get("/api/task_flows")
    text = dump_task_flows(task_flows, fmt)
    if output is None:
        typer.echo(text, nl=False)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        exit_with_error(f"Cannot write {output}: {exc.strerror or exc}.")
    exit_with_success(f"Wrote {len(task_flows)} task flow(s) to {output}.")

