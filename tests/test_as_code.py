"""Deployments as code: task flows get deployments on a docker work pool, next to their own."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from prefect.client.orchestration import PrefectClient

from deployments.as_code import AsCodeError, PoolTarget, apply
from deployments.sync import sync_all
from flows.database import create_pool
from flows.task_flow_store import TaskFlowStore
from tests.conftest import System


def _with_clients(system: System, work: Callable[[PrefectClient, TaskFlowStore], Awaitable[Any]]):
    async def run() -> Any:
        pool = create_pool(system.database_url, max_size=2, name="test-as-code")
        await pool.open(wait=True)
        try:
            async with PrefectClient(api=system.prefect_api_url) as prefect:
                return await work(prefect, TaskFlowStore(pool))
        finally:
            await pool.close()

    return asyncio.run(run())


def _apply(system: System, target: PoolTarget, names: list[str]) -> Any:
    return _with_clients(system, lambda prefect, flows: apply(prefect, flows, target, names=names))


def test_task_flows_get_container_deployments_that_survive_a_resync(
    system: System, prefect_api: httpx.Client, make_task_flow
):
    pool = f"containers-{uuid.uuid4().hex[:6]}"
    created = prefect_api.post("/work_pools/", json={"name": pool, "type": "docker"})
    assert created.status_code == 201, created.text
    first, second = make_task_flow(), make_task_flow(description="second one")
    target = PoolTarget(
        work_pool=pool,
        image="registry.example/taskflows:1",
        env={"AGENT_API_URL": "http://agent.internal:8080"},
        job_variables={"image_pull_policy": "Always"},
    )

    applied = _apply(system, target, [first["call_name"], second["call_name"]])
    assert set(applied) == {f"{first['call_name']}@{pool}", f"{second['call_name']}@{pool}"}

    # Each task flow is its own Prefect flow: `<call_name>/<call_name>@<pool>`.
    name = first["call_name"]
    deployment = prefect_api.get(f"/deployments/name/{name}/{name}@{pool}").json()
    assert deployment["work_pool_name"] == pool
    assert deployment["entrypoint"] == "flows/taskflow.py:run_task_flow"
    assert deployment["parameters"] == {"flow_id": first["id"]}
    assert deployment["job_variables"] == {
        "image": "registry.example/taskflows:1",
        "env": {"AGENT_API_URL": "http://agent.internal:8080"},
        "image_pull_policy": "Always",
    }
    assert deployment["pull_steps"] == [
        {"prefect.deployments.steps.set_working_directory": {"directory": "/opt/taskflows"}}
    ]
    assert set(deployment["tags"]) >= {"taskflows", f"pool:{pool}"}
    # The task flow's own deployment, which the API runs, is untouched.
    own = prefect_api.get(f"/deployments/{first['deployment_id']}").json()
    assert own["work_pool_name"] == "taskflows"

    # A schedule set on the container deployment (e.g. in the Prefect UI) survives a re-run,
    # and the worker's start-up resync leaves deployments on other pools alone.
    prefect_api.post(
        f"/deployments/{deployment['id']}/schedules",
        json=[{"schedule": {"cron": "0 4 * * *", "timezone": "UTC"}, "active": True}],
    )
    _apply(system, target, [first["call_name"]])
    _with_clients(system, sync_all)
    again = prefect_api.get(f"/deployments/{deployment['id']}")
    assert again.status_code == 200, "the resync deleted a deployment of another pool"
    assert [s["schedule"]["cron"] for s in again.json()["schedules"]] == ["0 4 * * *"]


def test_refuses_a_missing_pool_and_the_in_process_pool(system: System, make_task_flow):
    flow = make_task_flow()
    for pool, words in (("no-such-pool", "does not exist"), ("taskflows", "in-process")):
        with pytest.raises(AsCodeError, match=words):
            _apply(system, PoolTarget(work_pool=pool), [flow["call_name"]])
