"""What a Prefect user sees on the Flows page: each task flow is a flow of its own, named
after it, with its deployment and its runs; deployments of the shared flow of old are moved
over by the sync without losing their schedules or their runs."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import psycopg
from prefect.client.orchestration import PrefectClient

from deployments.sync import ENTRYPOINT, sync_all
from flows.database import create_pool
from flows.task_flow_store import TaskFlowStore
from tests.conftest import System, wait_for_execution, wait_for_flow_run


def _flow(prefect_api: httpx.Client, flow_id: str) -> dict[str, Any]:
    response = prefect_api.get(f"/flows/{flow_id}")
    assert response.status_code == 200, response.text
    return dict(response.json())


def _task_runs(prefect_api: httpx.Client, flow_run_id: str, count: int) -> list[dict[str, Any]]:
    """The flow run's task runs once `count` are listed: the server records them from the
    worker's events in batches, up to a second after the flow run ends."""
    deadline = time.monotonic() + 30
    task_runs: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        task_runs = prefect_api.post(
            "/task_runs/filter", json={"flow_runs": {"id": {"any_": [flow_run_id]}}}
        ).json()
        if len(task_runs) >= count:
            break
        time.sleep(0.2)
    return task_runs


def _sync_all(system: System) -> dict[str, Any]:
    async def run() -> dict[str, Any]:
        pool = create_pool(system.database_url, max_size=2, name="test-prefect-flows")
        await pool.open(wait=True)
        try:
            async with PrefectClient(api=system.prefect_api_url) as prefect:
                return await sync_all(prefect, TaskFlowStore(pool))
        finally:
            await pool.close()

    return asyncio.run(run())


def test_each_task_flow_is_a_prefect_flow_with_its_deployment_and_runs(
    api: httpx.Client, prefect_api: httpx.Client, fake_agent, make_task_flow
):
    first = make_task_flow(prompts=["alpha", "beta"])
    second = make_task_flow(prompts=["gamma"])
    runs = {}
    for task_flow in (first, second):
        started = api.post(f"/api/task_flows/{task_flow['id']}/run").json()
        assert wait_for_execution(api, started["execution_id"])["status"] == "completed"
        runs[task_flow["call_name"]] = (
            started,
            wait_for_flow_run(prefect_api, started["flow_run_id"]),
        )

    listed = prefect_api.post(
        "/flows/filter",
        json={"flows": {"name": {"any_": [first["call_name"], second["call_name"]]}}},
    ).json()
    assert sorted(flow["name"] for flow in listed) == sorted(runs)
    for flow in listed:
        name = flow["name"]
        deployment = prefect_api.get(f"/deployments/name/{name}/{name}").json()
        assert deployment["flow_id"] == flow["id"]
        started, flow_run = runs[name]
        assert flow_run["flow_id"] == flow["id"]
        assert flow_run["deployment_id"] == deployment["id"]
        # Run names, task names and tags are as they were with the shared flow.
        assert flow_run["name"] == f"{name} #{started['execution_id']}"
        assert flow_run["state"]["type"] == "COMPLETED"
        assert {"taskflows", "trigger:api"} <= set(flow_run["tags"])
        expected = ["prompt 1/2", "prompt 2/2"] if name == first["call_name"] else ["prompt 1/1"]
        task_runs = _task_runs(prefect_api, flow_run["id"], len(expected))
        assert sorted(t["name"] for t in task_runs) == expected
        artifacts = prefect_api.post(
            "/artifacts/filter", json={"artifacts": {"flow_run_id": {"any_": [flow_run["id"]]}}}
        ).json()
        assert "table" in {a["type"] for a in artifacts}


def test_a_renamed_task_flow_gets_a_flow_of_its_new_name(
    api: httpx.Client, prefect_api: httpx.Client, fake_agent, make_task_flow
):
    task_flow = make_task_flow()
    new_name = task_flow["call_name"] + "-renamed"
    renamed = api.patch(f"/api/task_flows/{task_flow['id']}", json={"call_name": new_name})
    assert renamed.status_code == 200, renamed.text
    deployment = prefect_api.get(f"/deployments/{renamed.json()['deployment_id']}").json()
    assert deployment["name"] == new_name
    assert _flow(prefect_api, deployment["flow_id"])["name"] == new_name
    started = api.post(f"/api/task_flows/{task_flow['id']}/run").json()
    assert wait_for_execution(api, started["execution_id"])["status"] == "completed"
    assert (
        wait_for_flow_run(prefect_api, started["flow_run_id"])["flow_id"] == deployment["flow_id"]
    )


def test_the_sync_moves_a_deployment_of_the_shared_flow_with_its_schedule_and_runs(
    system: System,
    api: httpx.Client,
    prefect_api: httpx.Client,
    db: psycopg.Connection[Any],
    fake_agent,
    make_task_flow,
):
    task_flow = make_task_flow(prompts=["from the old days"])
    name = task_flow["call_name"]
    # The world before: the task flow's deployment belongs to the one shared flow `taskflow`.
    prefect_api.delete(f"/deployments/{task_flow['deployment_id']}")
    shared = prefect_api.post("/flows/", json={"name": "taskflow"}).json()
    created = prefect_api.post(
        "/deployments/",
        json={
            "name": name,
            "flow_id": shared["id"],
            "work_pool_name": "taskflows",
            "entrypoint": ENTRYPOINT,
            "parameters": {"flow_id": task_flow["id"]},
            "tags": ["taskflows", f"agent:{task_flow['agent']}"],
            "schedules": [
                {
                    "schedule": {"cron": "0 9 * * 1-5", "timezone": "Europe/Berlin"},
                    "active": True,
                    "parameters": {"flow_id": task_flow["id"]},
                }
            ],
        },
    )
    assert created.status_code in (200, 201), created.text
    old = created.json()
    db.execute(
        "UPDATE task_flows SET deployment_id = %s WHERE id = %s", (old["id"], task_flow["id"])
    )
    # A run of the old deployment ("Run" in the Prefect UI): it makes its own execution.
    old_run = prefect_api.post(f"/deployments/{old['id']}/create_flow_run", json={}).json()
    assert wait_for_flow_run(prefect_api, old_run["id"])["state"]["type"] == "COMPLETED"
    old_execution = db.execute(
        "SELECT id FROM flow_executions WHERE flow_run_id = %s", (old_run["id"],)
    ).fetchone()
    assert old_execution is not None

    _sync_all(system)

    moved = api.get(f"/api/task_flows/{task_flow['id']}").json()
    assert moved["deployment_id"] != old["id"]
    assert prefect_api.get(f"/deployments/{old['id']}").status_code == 404
    deployment = prefect_api.get(f"/deployments/name/{name}/{name}").json()
    assert deployment["id"] == moved["deployment_id"]
    assert _flow(prefect_api, deployment["flow_id"])["name"] == name
    schedule = api.get(f"/api/task_flows/{task_flow['id']}/schedule").json()
    assert (schedule["cron"], schedule["timezone"]) == ("0 9 * * 1-5", "Europe/Berlin")
    # The old run and the link to it are still there.
    assert prefect_api.get(f"/flow_runs/{old_run['id']}").json()["state"]["type"] == "COMPLETED"
    execution = api.get(f"/api/executions/{old_execution['id']}").json()
    assert execution["prefect_url"].endswith(old_run["id"])
    # New runs land on the task flow's own flow.
    started = api.post(f"/api/task_flows/{task_flow['id']}/run").json()
    assert wait_for_execution(api, started["execution_id"])["status"] == "completed"
    assert (
        wait_for_flow_run(prefect_api, started["flow_run_id"])["flow_id"] == deployment["flow_id"]
    )
    api.delete(f"/api/task_flows/{task_flow['id']}/schedule")


def test_a_run_whose_deployment_was_deleted_in_prefect_recreates_it(
    api: httpx.Client, prefect_api: httpx.Client, fake_agent, make_task_flow
):
    task_flow = make_task_flow(prompts=["still here"])
    gone = prefect_api.delete(f"/deployments/{task_flow['deployment_id']}")
    assert gone.status_code == 204, gone.text

    started = api.post(f"/api/task_flows/{task_flow['id']}/run")
    assert started.status_code in (200, 201, 202), started.text
    done = wait_for_execution(api, started.json()["execution_id"])
    assert done["status"] == "completed", done
    flow_run = wait_for_flow_run(prefect_api, started.json()["flow_run_id"])
    assert flow_run["deployment_id"] != task_flow["deployment_id"]
    assert api.get(f"/api/task_flows/{task_flow['id']}").json()["deployment_id"] == (
        flow_run["deployment_id"]
    )
