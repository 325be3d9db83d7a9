"""Cron schedules live on the task flow's Prefect deployment, and they fire."""

from __future__ import annotations

import time
from datetime import datetime, timedelta

import httpx
import pytest

from stack.demo_agent import DemoAgent
from tests.conftest import wait_for_execution


def _prefect_schedules(prefect_api: httpx.Client, deployment_id: str) -> list[dict]:
    response = prefect_api.get(f"/deployments/{deployment_id}/schedules")
    assert response.status_code == 200, response.text
    return list(response.json())


def test_put_get_delete_round_trip(api: httpx.Client, prefect_api: httpx.Client, make_task_flow):
    flow = make_task_flow()
    url = f"/api/task_flows/{flow['id']}/schedule"

    put = api.put(url, json={"cron": "0 9 * * 1-5", "timezone": "Europe/Berlin"})
    assert put.status_code == 200, put.text
    schedule = put.json()
    assert schedule["cron"] == "0 9 * * 1-5" and schedule["kind"] == "cron"
    assert schedule["timezone"] == "Europe/Berlin"
    assert schedule["enabled"] is True and schedule["paused"] is False
    assert schedule["flow_id"] == flow["id"] and schedule["call_name"] == flow["call_name"]
    assert schedule["deployment_id"] == flow["deployment_id"]
    runs = [datetime.fromisoformat(text) for text in schedule["next_runs"]]
    assert len(runs) == 5 and runs == sorted(runs) and runs[0] > datetime.now(runs[0].tzinfo)
    # In the schedule's time zone: 09:00 local, Monday to Friday, with Berlin's offset.
    assert all((r.hour, r.minute) == (9, 0) and r.weekday() < 5 for r in runs)
    assert all(r.utcoffset() in (timedelta(hours=1), timedelta(hours=2)) for r in runs)

    in_prefect = _prefect_schedules(prefect_api, flow["deployment_id"])
    assert len(in_prefect) == 1
    assert in_prefect[0]["schedule"]["cron"] == "0 9 * * 1-5"
    assert in_prefect[0]["schedule"]["timezone"] == "Europe/Berlin"
    assert in_prefect[0]["parameters"] == {"flow_id": flow["id"]}
    assert in_prefect[0]["active"] is True

    assert api.get(url).json() == schedule
    listed = {s["flow_id"]: s for s in api.get("/api/schedules").json()}
    assert listed[flow["id"]]["cron"] == "0 9 * * 1-5"

    # A second PUT replaces the schedule (still one), here disabled: nothing is coming.
    disabled = api.put(url, json={"cron": "*/30 * * * *", "enabled": False}).json()
    assert disabled["enabled"] is False and disabled["next_runs"] == []
    assert disabled["timezone"] == "UTC"
    in_prefect = _prefect_schedules(prefect_api, flow["deployment_id"])
    assert [(s["schedule"]["cron"], s["active"]) for s in in_prefect] == [("*/30 * * * *", False)]

    deleted = api.delete(url)
    assert deleted.status_code == 200 and deleted.json() == {"ok": True, "id": flow["id"]}
    assert _prefect_schedules(prefect_api, flow["deployment_id"]) == []
    missing = api.get(url)
    assert missing.status_code == 404
    expected = f"Task flow {flow['id']} has no schedule; PUT one to create it."
    assert missing.json()["error"] == expected
    assert api.delete(url).status_code == 200  # deleting nothing is fine
    assert flow["id"] not in {s["flow_id"] for s in api.get("/api/schedules").json()}


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"cron": "61 * * * *"}, "cron", "is not a valid cron expression"),
        ({"cron": "* * *"}, "cron", "must have 5 fields"),
        ({"cron": "*/5 * * * * 30"}, "cron", "must have 5 fields"),
        ({"cron": ""}, "cron", "must be a cron expression"),
        ({"cron": 5}, "cron", "must be a string"),
        ({"cron": "0 9 * * *", "timezone": "Mars/Olympus"}, "timezone", "IANA time zone"),
        ({"cron": "0 9 * * *", "enabled": "sometimes"}, "enabled", "true or false"),
        ({"timezone": "UTC"}, "cron", "is required"),
        ({"cron": "0 9 * * *", "every": "day"}, "every", "not a field"),
    ],
)
def test_invalid_schedule_is_422_with_a_sentence(
    api: httpx.Client, make_task_flow, body, field, words
):
    flow = make_task_flow()
    response = api.put(f"/api/task_flows/{flow['id']}/schedule", json=body)
    assert response.status_code == 422, response.text
    error = response.json()
    assert words in error["error"] and error["error"].endswith(".")
    assert error["error"].startswith(field)
    assert error["detail"][0]["field"] == field
    assert api.get(f"/api/task_flows/{flow['id']}/schedule").status_code == 404


def test_unknown_task_flow_is_404(api: httpx.Client):
    for method in ("GET", "DELETE"):
        response = api.request(method, "/api/task_flows/987654321/schedule")
        assert response.status_code == 404
        assert response.json()["error"] == "Task flow 987654321 does not exist."
    response = api.put("/api/task_flows/987654321/schedule", json={"cron": "0 9 * * *"})
    assert response.status_code == 404


def test_a_schedule_edited_in_prefect_is_what_the_api_shows(
    api: httpx.Client, prefect_api: httpx.Client, make_task_flow
):
    flow = make_task_flow()
    url = f"/api/task_flows/{flow['id']}/schedule"
    created = api.put(url, json={"cron": "0 9 * * *"}).json()

    # What the Prefect UI's schedule editor sends.
    edited = prefect_api.patch(
        f"/deployments/{flow['deployment_id']}/schedules/{created['schedule_id']}",
        json={"schedule": {"cron": "30 6 * * 1", "timezone": "America/New_York"}, "active": True},
    )
    assert edited.status_code == 204, edited.text

    shown = api.get(url).json()
    assert shown["cron"] == "30 6 * * 1" and shown["timezone"] == "America/New_York"
    runs = [datetime.fromisoformat(text) for text in shown["next_runs"]]
    assert all((r.weekday(), r.hour, r.minute) == (0, 6, 30) for r in runs)

    # Paused in the Prefect UI: the schedule stays, nothing fires.
    assert prefect_api.patch(
        f"/deployments/{flow['deployment_id']}", json={"paused": True}
    ).status_code == 204
    paused = api.get(url).json()
    assert paused["paused"] is True and paused["next_runs"] == []

    # An interval schedule from the Prefect UI is shown as such.
    prefect_api.patch(
        f"/deployments/{flow['deployment_id']}/schedules/{created['schedule_id']}",
        json={"schedule": {"interval": 3600, "timezone": "UTC"}},
    )
    prefect_api.patch(f"/deployments/{flow['deployment_id']}", json={"paused": False})
    interval = api.get(url).json()
    assert interval["kind"] == "interval" and interval["cron"] is None
    assert interval["interval_seconds"] == 3600 and len(interval["next_runs"]) == 5
    api.delete(url)


def test_the_schedule_survives_edits_and_renames_of_the_task_flow(
    api: httpx.Client, prefect_api: httpx.Client, make_task_flow
):
    flow = make_task_flow()
    api.put(f"/api/task_flows/{flow['id']}/schedule", json={"cron": "15 3 * * *"})

    edited = api.patch(f"/api/task_flows/{flow['id']}", json={"description": "nightly"})
    assert edited.status_code == 200, edited.text
    renamed = api.patch(
        f"/api/task_flows/{flow['id']}", json={"call_name": flow["call_name"] + "-renamed"}
    ).json()
    # A rename makes a new deployment (deployments are named after the task flow).
    assert renamed["deployment_id"] != flow["deployment_id"]

    schedule = api.get(f"/api/task_flows/{flow['id']}/schedule").json()
    assert schedule["cron"] == "15 3 * * *"
    assert schedule["deployment_id"] == renamed["deployment_id"]
    in_prefect = _prefect_schedules(prefect_api, renamed["deployment_id"])
    assert [s["parameters"] for s in in_prefect] == [{"flow_id": flow["id"]}]
    api.delete(f"/api/task_flows/{flow['id']}/schedule")


@pytest.mark.slow
def test_a_schedule_fires_and_its_run_is_an_execution_like_any_other(
    api: httpx.Client, prefect_api: httpx.Client, fake_agent: DemoAgent, make_task_flow
):
    flow = make_task_flow(prompts=["scheduled hello", "and goodbye"])
    url = f"/api/task_flows/{flow['id']}/schedule"
    schedule = api.put(url, json={"cron": "* * * * *"}).json()
    first_fire = datetime.fromisoformat(schedule["next_runs"][0])
    try:
        # Every minute: the first run is due within 60 s; Prefect's scheduler plans it
        # within seconds of the PUT, and the worker polls every second.
        deadline = time.monotonic() + 90
        execution = None
        while time.monotonic() < deadline and execution is None:
            recent = api.get("/api/executions/recent", params={"limit": 50}).json()
            execution = next((e for e in recent if e["flow_id"] == flow["id"]), None)
            time.sleep(0.5)
        assert execution is not None, f"no scheduled run within 90 s (first due {first_fire})"
    finally:
        api.delete(url)

    assert execution["trigger"] == "schedule"
    done = wait_for_execution(api, execution["id"])
    assert done["status"] == "completed", done
    assert [r["response"] for r in done["prompt_results"]] == [
        "Echo: scheduled hello",
        "Echo: and goodbye",
    ]
    flow_run = prefect_api.get(f"/flow_runs/{done['flow_run_id']}").json()
    assert flow_run["auto_scheduled"] is True
    assert flow_run["deployment_id"] == flow["deployment_id"]
    assert flow_run["parameters"]["flow_id"] == flow["id"]
    fired_at = datetime.fromisoformat(flow_run["expected_start_time"])
    assert fired_at >= first_fire and fired_at.second == 0
    # Deleting the schedule dropped the runs it had queued.
    queued = prefect_api.post(
        "/flow_runs/filter",
        json={
            "deployments": {"id": {"any_": [flow["deployment_id"]]}},
            "flow_runs": {"state": {"type": {"any_": ["SCHEDULED"]}}},
        },
    ).json()
    assert queued == []
