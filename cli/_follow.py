"""Follow an execution in the terminal until it ends: `run --follow`, `retry --follow`.

A progress bar advances prompt by prompt, the answer being written shows under it as the
agent streams it, and each response is printed the moment it is recorded. Changes arrive
through the API's event stream (`GET /api/executions/stream`);
each one is then read in full from `GET /api/executions/{id}` (the stream cuts long texts).
Without the stream (an older API, a proxy that buffers it) the execution is polled every
half second instead.
"""

from __future__ import annotations

import textwrap
import time
from typing import Any, NoReturn

from rich.console import Console, Group
from rich.live import Live
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from cli._api import ApiClient, ApiError
from cli._output import (
    FINAL,
    console,
    duration,
    excerpt,
    exit_with_error,
    exit_with_success,
    plain,
    seconds_text,
)

POLL_S = 0.5


WRITING_TAIL_CHARS = 400


class _View:
    """The progress bar, the answer being written, and the prompt results printed so far."""

    def __init__(self, execution: dict[str, Any], out: Console) -> None:
        self.out = out
        self.printed = 0
        self.writing = Text(style="dim")
        self._writing_key: tuple[int, int] | None = None
        self._written = ""
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=out,
            transient=False,
        )
        self.task = self.progress.add_task(
            self._description(execution), total=execution["total_prompts"]
        )
        self.live = Live(Group(self.progress, self.writing), console=out, refresh_per_second=10)

    def __enter__(self) -> _View:
        self.live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.live.stop()

    def write(self, partial: dict[str, Any]) -> None:
        """Show agent text as it arrives (`partial` events of the stream)."""
        key = (int(partial["index"]), int(partial["attempt"]))
        if key != self._writing_key:
            if partial["offset"] != 0:
                return  # joined mid-answer without the start: wait for the next prompt
            self._writing_key, self._written = key, ""
        if partial["offset"] == len(self._written):
            self._written += plain(partial["delta"])
        tail = self._written[-WRITING_TAIL_CHARS:]
        self.writing.plain = f"  writing… {tail}"

    def show(self, execution: dict[str, Any]) -> None:
        results = execution.get("prompt_results") or []
        total = execution["total_prompts"]
        for result in results[self.printed :]:
            self.live.console.print(_result_text(result, total))
            self._writing_key, self._written, self.writing.plain = None, "", ""
        self.printed = max(self.printed, len(results))
        done = sum(1 for result in results if result.get("success"))
        self.progress.update(self.task, completed=done, description=self._description(execution))

    def _description(self, execution: dict[str, Any]) -> str:
        name = f"{execution['call_name']} #{execution['id']}"
        status = execution["status"]
        if status == "running" and execution["current_prompt_index"] < execution["total_prompts"]:
            number = execution["current_prompt_index"] + 1
            return f"{name}: prompt {number}/{execution['total_prompts']}"
        return f"{name}: {status}"


def _result_text(result: dict[str, Any], total: int) -> Text:
    number = f"{result['index'] + 1}/{total}"
    took = result.get("duration_ms")
    timing = f" ({seconds_text(took / 1000)})" if isinstance(took, int | float) else ""
    text = Text()
    if result.get("success"):
        text.append("✓ ", style="green").append(f"{number} ", style="bold")
        text.append(excerpt(result.get("prompt"), 80)).append(timing, style="dim")
        text.append("\n").append(_indented(result.get("response")))
    else:
        text.append("✗ ", style="red").append(f"{number} ", style="bold")
        text.append(excerpt(result.get("prompt"), 80)).append(timing, style="dim")
        text.append("\n").append(_indented(result.get("error") or "failed"), style="red")
    return text


def _indented(text: object) -> str:
    return textwrap.indent(plain(text or ""), "  ", lambda line: True)


def follow_execution(api: ApiClient, execution_id: int, out: Console = console) -> dict[str, Any]:
    """Show the execution's progress until it ends; return it as it ended."""
    execution: dict[str, Any] = api.get(f"/api/executions/{execution_id}")
    with _View(execution, out) as view:
        view.show(execution)
        if execution["status"] not in FINAL:
            execution = _through_stream(api, execution, view)
        if execution["status"] not in FINAL:
            execution = _by_polling(api, execution, view)
    return execution


def _through_stream(api: ApiClient, execution: dict[str, Any], view: _View) -> dict[str, Any]:
    """Re-read the execution whenever the stream says it changed; stop when it ends, or when
    the stream is unavailable or closed (the caller then polls)."""
    execution_id = execution["id"]
    try:
        stream = api.events("/api/executions/stream", ids=str(execution_id), partials="true")
        for event, data in stream:
            if event == "partial":
                if isinstance(data, dict) and data.get("id") == execution_id:
                    view.write(data)
                continue
            if not _mentions(event, data, execution_id):
                continue
            execution = api.get(f"/api/executions/{execution_id}")
            view.show(execution)
            if execution["status"] in FINAL:
                break
    except ApiError as exc:
        if exc.status is not None and exc.status not in (404, 405, 501):
            raise
    return execution


def _mentions(event: str, data: Any, execution_id: int) -> bool:
    if not isinstance(data, dict):
        return False
    if event == "execution":
        return data.get("id") == execution_id
    if event == "snapshot":
        return any(e.get("id") == execution_id for e in data.get("executions") or [])
    return False


def _by_polling(api: ApiClient, execution: dict[str, Any], view: _View) -> dict[str, Any]:
    while execution["status"] not in FINAL:
        time.sleep(POLL_S)
        execution = api.get(f"/api/executions/{execution['id']}")
        view.show(execution)
    return execution


def exit_with_outcome(execution: dict[str, Any]) -> NoReturn:
    """Exit 0 when the execution completed; otherwise print why it did not and exit 1."""
    label = f"Execution {execution['id']} ({execution['call_name']})"
    took = duration(execution.get("started_at"), execution.get("completed_at"))
    if execution["status"] == "completed":
        count = execution["total_prompts"]
        exit_with_success(f"{label} completed: {count} prompt{'s' * (count != 1)} in {took}.")
    reason = execution.get("error") or "no reason was recorded"
    if execution["status"] == "cancelled":
        exit_with_error(f"{label} was cancelled: {reason}")
    exit_with_error(f"{label} {execution['status']}: {reason}")
