"""`taskflows agents`: the agent names a task flow can use, the default one marked."""

from __future__ import annotations

from rich.text import Text

from cli._api import ApiClient
from cli._output import console, reports_api_errors


@reports_api_errors
def agents() -> None:
    """List the agents the Agent API offers (`GET /api/agents`), one name a line."""
    with ApiClient() as api:
        answer = api.get("/api/agents")
    for name in answer["agents"]:
        line = Text(name, style="cyan")
        if name == answer["default"]:
            line.append("  (default)", style="green")
        console.print(line)
    if answer["default"] not in answer["agents"]:
        console.print(
            Text(f"The default agent {answer['default']!r} is not among them.", style="yellow")
        )
