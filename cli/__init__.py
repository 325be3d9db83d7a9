"""`taskflows`: the command line of taskflows, in the style of Prefect's own.

Every command but `up` talks to the REST API at `TASKFLOWS_API_URL` (default
`http://127.0.0.1:$API_PORT`), with `TASKFLOWS_API_TOKEN` as bearer token when set. A
failure prints the API's sentence in red and exits 1, never a traceback::

    taskflows up
    taskflows flows import examples.yaml
    taskflows run daily-report --follow
    taskflows schedule daily-report "0 9 * * 1-5" --timezone Europe/Berlin
    taskflows alert daily-report https://hooks.example/taskflows --on failed,late
    taskflows agents
"""

from __future__ import annotations

import typer

from cli import executions, flows
from cli.agents import agents
from cli.alerts import alert
from cli.run import run
from cli.schedule import schedule
from cli.up import up

app = typer.Typer(
    name="taskflows",
    help="Run task flows (ordered LLM prompts) on Prefect, and follow them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)
app.command(
    "up", context_settings={"allow_extra_args": True, "ignore_unknown_options": True}
)(up)
app.add_typer(flows.app, name="flows")
app.command("run")(run)
app.add_typer(executions.app, name="executions")
app.command("schedule")(schedule)
app.command("alert")(alert)
app.command("agents")(agents)

__all__ = ["app"]
