"""The old system's UI as a client: its calls, with its exact request bodies, answered in
the shapes it reads (`extensions/automation_memory/ui/src/App.jsx` of the old system).

Each test makes the requests the old UI makes (as its `fetch` calls do: no
`Content-Type` on a bodiless POST, JSON bodies otherwise) and checks the fields it reads.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from stack.demo_agent import DemoAgent
from tests.conftest import FINAL, wait_for_execution

# What the old UI sends for a new schedule and what its form starts with.
NO_DAYS = [False] * 7
WEEKDAYS = [False, True, True, True, True, True, False]  # Sunday first


def refresh(api: httpx.Client) -> dict[str, list[dict[str, Any]]]:
    response = api.get("/api/executions/refresh")
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"active", "recent"}
    return dict(body)


def poll_refresh(
    api: httpx.Client,
    until: Callable[[dict[str, list[dict[str, Any]]]], Any],
    timeout: float = 60.0,
) -> Any:
    """Poll /refresh (as the old UI does, but faster) until `until` returns something."""
    deadline = time.monotonic() + timeout
    last: dict[str, Any] = {}
    while time.monotonic() < deadline:
        last = refresh(api)
        found = until(last)
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"/refresh never got there; last seen: {last}")


def find(executions: list[dict[str, Any]], execution_id: int) -> dict[str, Any] | None:
    return next((e for e in executions if e["id"] == execution_id), None)


def run_like_the_old_ui(api: httpx.Client, flow_id: int) -> int:
    # `fetch(url, {method: 'POST'})`: no body, no Content-Type; the UI reads `data.ok`.
    response = api.post(f"/api/task_flows/{flow_id}/run")
    assert response.status_code in (200, 201), response.text
    body = response.json()
    assert body["ok"] is True
    return int(body["execution_id"])


@pytest.fixture
def scheduled_prompts(api: httpx.Client) -> Iterator[list[int]]:
    """Ids of scheduled prompts a test made; deleted afterwards so none keeps firing."""
    made: list[int] = []
    yield made
    for prompt_id in made:
        api.delete(f"/api/scheduled_prompts/{prompt_id}")


def test_refresh_shows_a_run_live_then_in_the_history(
    api: httpx.Client, fake_agent: DemoAgent, make_task_flow
):
    flow = make_task_flow(prompts=["one", "two [delay=2]", "three"])
    execution_id = run_like_the_old_ui(api, flow["id"])

    # While it runs: in `active`, a full execution the UI draws its progress bar from.
    running = poll_refresh(
        api,
        lambda body: (
            (e := find(body["active"], execution_id)) and e["current_prompt_index"] >= 1 and e
        ),
    )
    assert running["call_name"] == flow["call_name"] and running["agent"] == flow["agent"]
    assert running["prompts"] == ["one", "two [delay=2]", "three"]
    assert running["total_prompts"] == 3
    assert running["prompt_results"][0]["response"] == "Echo: one"
    assert running["prompts"][running["current_prompt_index"]] == "two [delay=2]"

    # Finished: out of `active`, first in `recent`, in the colours' terms ("completed").
    body = poll_refresh(api, lambda body: find(body["recent"], execution_id) and body)
    assert find(body["active"], execution_id) is None
    done = body["recent"][0]
    assert done["id"] == execution_id and done["status"] == "completed"
    assert done["current_prompt_index"] == done["total_prompts"] == 3
    assert [r["response"] for r in done["prompt_results"]] == [
        "Echo: one",
        "Echo: two",  # the demo agent strips its directives
        "Echo: three",
    ]
    assert all(r["success"] is True and r["prompt"] for r in done["prompt_results"])


def test_refresh_recent_is_the_20_newest_not_active_newest_first(
    api: httpx.Client, fake_agent: DemoAgent, make_task_flow
):
    flow = make_task_flow(prompts=["quick"])
    ids = [run_like_the_old_ui(api, flow["id"]) for _ in range(3)]
    for execution_id in ids:
        wait_for_execution(api, execution_id)
    slow = make_task_flow(prompts=["[delay=3] slow"])
    running_id = run_like_the_old_ui(api, slow["id"])
    body = poll_refresh(api, lambda body: find(body["active"], running_id) and body)

    recent = body["recent"]
    assert len(recent) <= 20
    assert all(e["status"] in FINAL for e in recent)
    assert find(recent, running_id) is None
    assert [e["id"] for e in recent] == sorted((e["id"] for e in recent), reverse=True)
    assert [e["id"] for e in recent[:3]] == ids[::-1]
    assert all(e["status"] in ("queued", "running") for e in body["active"])
    assert [e["id"] for e in body["active"]] == sorted(e["id"] for e in body["active"])
    wait_for_execution(api, running_id)


def test_a_failed_run_counts_the_prompt_that_failed(
    api: httpx.Client, fake_agent: DemoAgent, make_task_flow
):
    flow = make_task_flow(prompts=["first", "second [fail=400]", "third"])
    execution_id = run_like_the_old_ui(api, flow["id"])
    failed = poll_refresh(
        api,
        lambda body: (e := find(body["recent"], execution_id)) and e["status"] == "failed" and e,
    )
    # The old UI shows "2/3 prompts" next to the two results, the second one in red.
    assert (failed["current_prompt_index"], failed["total_prompts"]) == (2, 3)
    first, second = failed["prompt_results"]
    assert first["success"] is True and first["response"] == "Echo: first"
    assert second["success"] is False and "HTTP 400" in second["error"]
    assert failed["error"].startswith("Prompt 2 of 3 failed")

    # Retry still resumes from the stored results: only the failed prompt onwards is sent.
    fake_agent.requests.clear()
    retried = api.post(f"/api/executions/{execution_id}/retry").json()
    again = wait_for_execution(api, retried["execution_id"])
    assert again["status"] == "failed" and again["current_prompt_index"] == 2
    assert "first" not in fake_agent.prompts_received()


def test_refresh_is_routed_and_documented(api: httpx.Client):
    spec = api.get("/openapi.json").json()
    operation = spec["paths"]["/api/executions/refresh"]["get"]
    schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
    assert schema["$ref"].endswith("/RefreshOut")
    assert api.get("/api/executions/refresh").status_code == 200
    # The id route still answers ids, and a word that is not a route stays a 422.
    assert api.get("/api/executions/refreshes").status_code == 422


def test_agents_are_names(api: httpx.Client):
    body = api.get("/api/agents").json()
    # The old UI renders each element as an <option> label and value.
    assert body["agents"] == ["default", "demo-echo"]
    assert body["default"] == "default"


def test_healthz_says_status_ok_and_keeps_its_fields(api: httpx.Client):
    response = api.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "ok": True,
        "database": "ok",
        "prefect": "ok",
        "worker": "ok",
    }


def test_task_flows_and_memories_as_the_old_ui_edits_them(api: httpx.Client):
    name = f"old-ui-{uuid.uuid4().hex[:8]}"
    created = api.post(
        "/api/task_flows",
        json={"call_name": name, "prompts": ["Check the mail"], "agent": "demo-echo"},
    )
    assert created.status_code in (200, 201), created.text
    flow_id = created.json()["id"]
    listed = next(f for f in api.get("/api/task_flows").json() if f["id"] == flow_id)
    assert (listed["call_name"], listed["prompts"], listed["agent"]) == (
        name,
        ["Check the mail"],
        "demo-echo",
    )
    # Edit sends the whole flow back (prompts filtered of blanks by the UI).
    edited = api.put(
        f"/api/task_flows/{flow_id}",
        json={"call_name": name, "prompts": ["Check the mail", "Summarise"], "agent": "default"},
    )
    assert edited.status_code == 200, edited.text
    listed = next(f for f in api.get("/api/task_flows").json() if f["id"] == flow_id)
    assert listed["prompts"] == ["Check the mail", "Summarise"] and listed["agent"] == "default"
    assert api.delete(f"/api/task_flows/{flow_id}").json()["ok"] is True
    assert flow_id not in {f["id"] for f in api.get("/api/task_flows").json()}

    memory = api.post("/api/memories", json={"content": "The user likes tea"})
    assert memory.status_code in (200, 201), memory.text
    memory_id = memory.json()["id"]
    shown = {m["id"]: m["content"] for m in api.get("/api/memories").json()}
    assert shown[memory_id] == "The user likes tea"
    assert api.delete(f"/api/memories/{memory_id}").json()["ok"] is True
    assert memory_id not in {m["id"] for m in api.get("/api/memories").json()}


def _prefect_deployment(prefect_api: httpx.Client, deployment_id: str) -> dict[str, Any]:
    response = prefect_api.get(f"/deployments/{deployment_id}")
    assert response.status_code == 200, response.text
    return dict(response.json())


def _only_schedule(deployment: dict[str, Any]) -> tuple[str, str, bool, dict[str, Any]]:
    (schedule,) = deployment["schedules"]
    spec = schedule["schedule"]
    return spec["cron"], spec["timezone"], schedule["active"], schedule["parameters"]


def test_scheduled_prompts_crud_is_a_prefect_schedule(
    api: httpx.Client, prefect_api: httpx.Client, scheduled_prompts: list[int]
):
    # The old UI's "Save Schedule" body, unchanged.
    new = {
        "time_of_day": "09:00",
        "days_of_week": WEEKDAYS,
        "prompt": "Check the calendar",
        "agent": "simple_agent",
        "enabled": True,
    }
    created = api.post("/api/scheduled_prompts", json=new)
    assert created.status_code in (200, 201), created.text
    prompt_id = created.json()["id"]
    scheduled_prompts.append(prompt_id)

    listed = api.get("/api/scheduled_prompts").json()
    assert listed[0]["id"] == prompt_id  # newest first, as the old server listed them
    shown = listed[0]
    assert {k: shown[k] for k in new} == new
    assert shown["timezone"] == "UTC" and shown["cron"] == "0 9 * * 1,2,3,4,5"

    deployment = _prefect_deployment(prefect_api, shown["deployment_id"])
    assert deployment["name"] == f"scheduled-prompt-{prompt_id}"
    assert deployment["parameters"] == {"scheduled_prompt_id": prompt_id}
    assert _only_schedule(deployment) == (
        "0 9 * * 1,2,3,4,5",
        "UTC",
        True,
        {"scheduled_prompt_id": prompt_id},
    )

    # "Disable": the old UI sends only `enabled`; the schedule is paused in Prefect.
    toggled = api.put(f"/api/scheduled_prompts/{prompt_id}", json={"enabled": False})
    assert toggled.status_code == 200 and toggled.json()["ok"] is True
    assert _only_schedule(_prefect_deployment(prefect_api, shown["deployment_id"]))[2] is False
    again = next(s for s in api.get("/api/scheduled_prompts").json() if s["id"] == prompt_id)
    assert again["enabled"] is False and again["prompt"] == "Check the calendar"

    # "Save Changes": the whole form; plus a time zone, which the old UI never sends.
    edit = {
        "time_of_day": "18:30",
        "days_of_week": [True, False, False, False, False, False, True],
        "prompt": "Plan the week",
        "agent": "default",
        "enabled": True,
    }
    assert api.put(f"/api/scheduled_prompts/{prompt_id}", json=edit).json()["ok"] is True
    berlin = api.put(f"/api/scheduled_prompts/{prompt_id}", json={"timezone": "Europe/Berlin"})
    assert berlin.json()["timezone"] == "Europe/Berlin"
    assert _only_schedule(_prefect_deployment(prefect_api, shown["deployment_id"])) == (
        "30 18 * * 0,6",
        "Europe/Berlin",
        True,
        {"scheduled_prompt_id": prompt_id},
    )

    # No day chosen: kept, never fires (no schedule at all in Prefect).
    api.put(f"/api/scheduled_prompts/{prompt_id}", json={"days_of_week": NO_DAYS})
    assert _prefect_deployment(prefect_api, shown["deployment_id"])["schedules"] == []

    deleted = api.delete(f"/api/scheduled_prompts/{prompt_id}")
    assert deleted.status_code == 200 and deleted.json()["ok"] is True
    assert prompt_id not in {s["id"] for s in api.get("/api/scheduled_prompts").json()}
    assert prefect_api.get(f"/deployments/{shown['deployment_id']}").status_code == 404


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"time_of_day": "25:00"}, "time_of_day", "must be a time of day"),
        ({"time_of_day": "9am"}, "time_of_day", "HH:MM"),
        ({"days_of_week": [True] * 6}, "days_of_week", "7"),
        ({"days_of_week": ["Mon"] + [False] * 6}, "days_of_week[0]", "valid boolean"),
        ({"prompt": "   "}, "prompt", "not allowed"),
        ({"timezone": "Mars/Olympus"}, "timezone", "IANA time zone"),
        ({"enabled": None}, "enabled", "must not be null"),
    ],
)
def test_invalid_scheduled_prompt_edits_are_422_with_a_sentence(
    api: httpx.Client, scheduled_prompts: list[int], body, field, words
):
    created = api.post(
        "/api/scheduled_prompts",
        json={"time_of_day": "07:15", "days_of_week": NO_DAYS, "prompt": "Wake up"},
    ).json()
    scheduled_prompts.append(created["id"])
    response = api.put(f"/api/scheduled_prompts/{created['id']}", json=body)
    assert response.status_code == 422, response.text
    error = response.json()
    assert error["error"].startswith(field) and words in error["error"], error
    assert error["error"].endswith(".")
    unchanged = api.get(f"/api/scheduled_prompts/{created['id']}").json()
    assert unchanged["time_of_day"] == "07:15" and unchanged["prompt"] == "Wake up"


def test_unknown_scheduled_prompt_is_404(api: httpx.Client):
    for method, body in (("PUT", {"enabled": True}), ("DELETE", None), ("GET", None)):
        response = api.request(method, "/api/scheduled_prompts/987654321", json=body)
        assert response.status_code == 404
        assert response.json()["error"] == "Scheduled prompt 987654321 does not exist."
