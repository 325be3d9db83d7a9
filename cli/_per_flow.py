"""What `taskflows schedule` and `taskflows alert` share: one setting kept per task flow at
`/api/task_flows/{id}/<resource>`, which a command sets, shows or clears."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cli._api import ApiClient, ApiError
from cli._output import exit_with_success, find_task_flow


def set_show_or_clear(
    name: str,
    resource: str,
    *,
    body: dict[str, Any] | None,
    clear: bool,
    show: Callable[[dict[str, Any]], None],
    cleared: str,
    missing: str,
) -> None:
    """Clear the setting, show it (`body` None) or put `body`, then show the answer.

    `cleared` and `missing` are sentences ending the call, with `{name}` for the task flow's
    quoted name, e.g. "{name} has no schedule."
    """
    with ApiClient() as api:
        task_flow = find_task_flow(api, name)
        url = f"/api/task_flows/{task_flow['id']}/{resource}"
        quoted = repr(task_flow["call_name"])
        if clear:
            api.delete(url)
            exit_with_success(cleared.format(name=quoted))
        if body is None:
            try:
                current = api.get(url)
            except ApiError as exc:
                if exc.status != 404:
                    raise
                exit_with_success(missing.format(name=quoted))
            show(current)
            return
        show(api.put(url, body))
