"""Failure alerts: a Prefect automation with a webhook notification block posts to the
user's webhook when a run of the task flow fails."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from tests.conftest import System, wait_for_execution
from tests.test_cli import Cli


class WebhookReceiver:
    """A webhook endpoint on loopback that keeps what is posted to it."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                receiver.received.append(json.loads(self.rfile.read(length) or b"{}"))
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, needle: str, timeout: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for message in self.received:
                if needle in json.dumps(message):
                    return message
            time.sleep(0.2)
        raise AssertionError(f"no alert mentioning {needle!r}; received: {self.received}")


@pytest.fixture
def webhook() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    yield receiver
    receiver.server.shutdown()


def test_a_failed_run_posts_an_alert_with_its_name_error_and_links(
    api: httpx.Client, prefect_api: httpx.Client, fake_agent, make_task_flow, webhook
):
    task_flow = make_task_flow(prompts=["fine", "[fail=400] this one breaks"])
    url = f"/api/task_flows/{task_flow['id']}/alerts"
    assert api.get(url).status_code == 404

    put = api.put(url, json={"webhook_url": webhook.url, "on": ["failed", "late"]})
    assert put.status_code == 200, put.text
    alert = put.json()
    assert (alert["webhook_url"], alert["on"], alert["enabled"]) == (
        webhook.url,
        ["failed", "late"],
        True,
    )
    assert api.get(url).json() == alert
    # An ordinary Prefect automation, as the Automations page shows it.
    automation = prefect_api.get(f"/automations/{alert['automation_id']}").json()
    assert automation["name"] == f"taskflows alert: {task_flow['call_name']}"
    assert set(automation["trigger"]["expect"]) >= {"prefect.flow-run.Failed"}
    [action] = automation["actions"]
    assert action["type"] == "send-notification"
    block = prefect_api.get(f"/block_documents/{action['block_document_id']}").json()
    assert block["block_type"]["slug"] == "custom-webhook"

    started = api.post(f"/api/task_flows/{task_flow['id']}/run").json()
    execution = wait_for_execution(api, started["execution_id"])
    assert execution["status"] == "failed"

    message = webhook.wait_for(f"Execution: {execution['id']}")
    text = message["text"]
    assert f"Task flow: {task_flow['call_name']}" in text
    assert "State: Failed" in text
    assert "400" in text.split("Error:", 1)[1].splitlines()[0]
    assert f"{api.base_url}/#execution-{execution['id']}".replace("//#", "/#") in text
    assert f"/runs/flow-run/{started['flow_run_id']}" in text
    assert task_flow["call_name"] in message["subject"] and "failed" in message["subject"]

    assert api.delete(url).status_code == 200
    assert api.get(url).status_code == 404
    assert prefect_api.get(f"/automations/{alert['automation_id']}").status_code == 404


def test_a_completed_run_sends_nothing_and_a_replaced_alert_keeps_its_automation(
    api: httpx.Client, fake_agent, make_task_flow, webhook
):
    task_flow = make_task_flow(prompts=["all good"])
    url = f"/api/task_flows/{task_flow['id']}/alerts"
    first = api.put(url, json={"webhook_url": webhook.url}).json()
    assert first["on"] == ["failed"]
    second = api.put(url, json={"webhook_url": webhook.url, "on": ["cancelled", "failed"]}).json()
    assert second["automation_id"] == first["automation_id"]
    assert second["on"] == ["cancelled", "failed"]

    started = api.post(f"/api/task_flows/{task_flow['id']}/run").json()
    assert wait_for_execution(api, started["execution_id"])["status"] == "completed"
    cancelled = api.post(
        f"/api/task_flows/{task_flow['id']}/run", json=None
    ).json()  # a second run, cancelled at once
    api.post(f"/api/executions/{cancelled['execution_id']}/cancel")
    assert wait_for_execution(api, cancelled["execution_id"])["status"] == "cancelled"
    webhook.wait_for(f"Execution: {cancelled['execution_id']}")
    assert f"Execution: {started['execution_id']}" not in json.dumps(webhook.received)
    api.delete(url)


def test_an_alert_for_all_runs_posts_for_any_task_flows_failed_run(
    api: httpx.Client, prefect_api: httpx.Client, fake_agent, make_task_flow, webhook
):
    assert api.get("/api/alerts").status_code == 404
    put = api.put("/api/alerts", json={"webhook_url": webhook.url})
    assert put.status_code == 200, put.text
    try:
        alert = put.json()
        assert (alert["webhook_url"], alert["on"], alert["enabled"]) == (
            webhook.url,
            ["failed"],
            True,
        )
        assert api.get("/api/alerts").json() == alert
        automation = prefect_api.get(f"/automations/{alert['automation_id']}").json()
        assert automation["name"] == "taskflows alert: all task flows"
        related = automation["trigger"]["match_related"]
        assert related["prefect.resource.id"] == "prefect.tag.taskflows"

        # A task flow with no alert of its own.
        task_flow = make_task_flow(prompts=["[fail=400] this one breaks"])
        started = api.post(f"/api/task_flows/{task_flow['id']}/run").json()
        assert wait_for_execution(api, started["execution_id"])["status"] == "failed"
        text = webhook.wait_for(f"Execution: {started['execution_id']}")["text"]
        assert f"Task flow: {task_flow['call_name']}" in text
        assert "400" in text.split("Error:", 1)[1].splitlines()[0]
        assert f"/#execution-{started['execution_id']}" in text
        assert f"/runs/flow-run/{started['flow_run_id']}" in text
    finally:
        removed = api.delete("/api/alerts")
    assert removed.json() == {"ok": True, "removed": True}
    assert api.get("/api/alerts").status_code == 404
    assert prefect_api.get(f"/automations/{alert['automation_id']}").status_code == 404
    assert api.delete("/api/alerts").json() == {"ok": True, "removed": False}


def test_a_scheduled_run_that_did_not_start_on_time_posts_a_late_alert(
    api: httpx.Client, prefect_api: httpx.Client, make_task_flow, webhook
):
    task_flow = make_task_flow()
    url = f"/api/task_flows/{task_flow['id']}/alerts"
    assert api.put(url, json={"webhook_url": webhook.url, "on": ["late"]}).status_code == 200
    [deployment] = prefect_api.post(
        "/deployments/filter",
        json={"deployments": {"tags": {"all_": [f"task-flow:{task_flow['id']}"]}}},
    ).json()
    # A run of the task flow's flow, due an hour ago, that no worker can take: it belongs to
    # no deployment, so no work pool offers it. Prefect's late_runs service marks it Late.
    due = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    created = prefect_api.post(
        "/flow_runs/",
        json={
            "flow_id": deployment["flow_id"],
            "name": f"{task_flow['call_name']} #late",
            "tags": ["taskflows", f"task-flow:{task_flow['id']}"],
            "state": {
                "type": "SCHEDULED",
                "name": "Scheduled",
                "state_details": {"scheduled_time": due},
            },
        },
    )
    assert created.status_code == 201, created.text
    flow_run_id = created.json()["id"]
    try:
        message = webhook.wait_for(f"/runs/flow-run/{flow_run_id}")
        assert f"Task flow: {task_flow['call_name']}" in message["text"]
        assert "State: Late" in message["text"]
        assert "late" in message["subject"]
    finally:
        prefect_api.delete(f"/flow_runs/{flow_run_id}")
        api.delete(url)


def test_alert_all_command_sets_shows_and_clears(system: System):
    cli = Cli(system.api_url)
    shown = cli("alert", "--all", "https://hooks.example/all", "--on", "failed,cancelled")
    assert "https://hooks.example/all" in shown.stdout, shown.stdout
    assert "cancelled, failed" in shown.stdout, shown.stdout
    assert "taskflows alert: all task flows" in cli("alert", "--all").stdout
    assert "not a task flow" in cli("alert", "--all", "x", "https://h.example", expect=1).stderr
    assert "No alert is sent for all runs" in cli("alert", "--all", "--clear").stdout
    assert "no alert for all runs" in cli("alert", "--all").stdout


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"webhook_url": "ftp://example.com/x"}, "http:// or https://"),
        ({"webhook_url": "not a url"}, "http:// or https://"),
        ({"webhook_url": "https://hooks.example/a", "on": ["exploded"]}, "on"),
        ({"webhook_url": "https://hooks.example/a", "on": []}, "on"),
    ],
)
def test_bad_alerts_are_refused_with_a_sentence(
    api: httpx.Client, make_task_flow, body: dict[str, Any], words: str
):
    task_flow = make_task_flow()
    response = api.put(f"/api/task_flows/{task_flow['id']}/alerts", json=body)
    assert response.status_code == 422, response.text
    assert words in response.json()["error"] + json.dumps(response.json()["detail"])


def test_alerts_of_an_unknown_task_flow_are_404(api: httpx.Client):
    response = api.put("/api/task_flows/999999/alerts", json={"webhook_url": "https://a.example"})
    assert response.status_code == 404
    assert "999999" in response.json()["error"]


def test_alert_command_sets_shows_and_clears(system: System, make_task_flow):
    cli = Cli(system.api_url)
    flow = make_task_flow()
    shown = cli("alert", flow["call_name"], "https://hooks.example/tf", "--on", "failed,late")
    assert "https://hooks.example/tf" in shown.stdout and "failed, late" in shown.stdout
    assert f"taskflows alert: {flow['call_name']}" in cli("alert", flow["call_name"]).stdout
    bad = cli("alert", flow["call_name"], "https://hooks.example/tf", "--on", "boom", expect=1)
    assert "on" in bad.stderr and "failed" in bad.stderr
    assert "no longer sends alerts" in cli("alert", flow["call_name"], "--clear").stdout
    assert "has no alert" in cli("alert", flow["call_name"]).stdout
