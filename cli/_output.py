"""What every command shares: the consoles, leaving with a message, and formatting.

Like Prefect's CLI: success in green, errors in red, on their own line, and never a
traceback for a failure the user can do something about.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any, NoReturn, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.text import Text

from cli._api import ApiClient, ApiError

console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)

STATUS_STYLES = {
    "queued": "cyan",
    "running": "blue",
    "completed": "green",
    "failed": "red",
    "cancelled": "yellow",
}
FINAL = ("completed", "failed", "cancelled")

P = ParamSpec("P")
R = TypeVar("R")


def exit_with_error(message: str | Text, code: int = 1) -> NoReturn:
    """Print `message` in red on stderr and exit with `code`."""
    err_console.print(Text(message, style="red") if isinstance(message, str) else message)
    raise typer.Exit(code)


def exit_with_success(message: str | Text) -> NoReturn:
    console.print(Text(message, style="green") if isinstance(message, str) else message)
    raise typer.Exit(0)


def reports_api_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Turn an `ApiError` raised by `command` into its sentence in red and exit code 1."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except ApiError as exc:
            exit_with_error(str(exc))

    return wrapper


def find_task_flow(api: ApiClient, name: str) -> dict[str, Any]:
    """The task flow called `name` (its call_name), or with that id when `name` is a number."""
    task_flows: list[dict[str, Any]] = api.get("/api/task_flows")
    for task_flow in task_flows:
        if task_flow["call_name"] == name:
            return task_flow
    if name.isascii() and name.isdigit():
        for task_flow in task_flows:
            if task_flow["id"] == int(name):
                return task_flow
    raise ApiError(f"No task flow is called {name!r}; `taskflows flows list` shows them.", 404)


def status_text(status: str) -> Text:
    return Text(status, style=STATUS_STYLES.get(status, ""))


def local_time(value: str | None) -> str:
    """An ISO 8601 timestamp from the API, shown in this machine's time zone."""
    if not value:
        return "-"
    return datetime.fromisoformat(value).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def schedule_time(value: str) -> str:
    """A next-run time in the schedule's own time zone (as the API sends it), with its offset."""
    moment = datetime.fromisoformat(value)
    offset = moment.strftime("%z")
    offset = f"{offset[:3]}:{offset[3:]}" if offset else ""
    return f"{moment:%a %Y-%m-%d %H:%M} {offset}".strip()


def duration(started: str | None, finished: str | None) -> str:
    if not started or not finished:
        return "-"
    seconds = (datetime.fromisoformat(finished) - datetime.fromisoformat(started)).total_seconds()
    return seconds_text(seconds)


def seconds_text(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {rest} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


# Escape sequences (CSI `ESC [ ... final`, OSC/DCS/APC/PM/SOS strings up to BEL or ST, and
# two-character ones), then any other C0/C1 control character but newline and tab.
_ESCAPE_SEQUENCE = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"
    r"|\x1b[\]PX^_][^\x07\x1b]*(?:\x07|\x1b\\)?"
    r"|\x1b[@-Z\\-_]"
    r"|\x9b[0-?]*[ -/]*[@-~]"
)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def plain(text: object) -> str:
    r"""Text from an agent or another user, made safe for a terminal: its escape sequences
    (colours, cursor moves, window titles, hyperlinks, clipboard writes) and other control
    characters are removed; newlines and tabs stay.

    >>> plain("ok\x1b]0;pwned\x07 \x1b[2Jdone\r")
    'ok done'
    """
    return _CONTROL.sub("", _ESCAPE_SEQUENCE.sub("", str(text)))


def excerpt(text: str | None, width: int = 60) -> str:
    if not text:
        return ""
    flat = " ".join(plain(text).split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"
