"""Links into the Prefect UI, built in one place (the API's answers, the live stream, the
alert messages).

The base is `Settings.resolved_prefect_ui_url()`: Prefect's `PREFECT_UI_URL` when set,
otherwise the Prefect API URL without `/api`.

>>> flow_run_url("http://127.0.0.1:4200", "0b9c…")
'http://127.0.0.1:4200/runs/flow-run/0b9c…'
"""

from __future__ import annotations


def flow_run_url(ui_url: str, flow_run_id: object | None) -> str | None:
    """The flow run's page, or None for an execution that has no flow run yet."""
    return f"{ui_url}/runs/flow-run/{flow_run_id}" if flow_run_id else None


def deployment_url(ui_url: str, deployment_id: object) -> str:
    """The deployment's page (its runs, its schedules)."""
    return f"{ui_url}/deployments/deployment/{deployment_id}"


def automation_url(ui_url: str, automation_id: object) -> str:
    """The automation's page (a task flow's alert)."""
    return f"{ui_url}/automations/automation/{automation_id}"
