"""What a Prefect user sees: artifacts and tags on each run, per-agent concurrency limits
enforced through Prefect, and several workers sharing one work pool."""

from __future__ import annotations

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from stack.demo_agent import DemoAgent
from tests.conftest import System, wait_for_execution, wait_for_flow_run


def _run(api: httpx.Client, flow_id: int) -> dict:
    response = api.post(f"/api/task_flows/{flow_id}/run")
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_each_run_has_progress_and_results_artifacts_and_tags(
    api: httpx.Client, prefect_api: httpx.Client, fake_agent: DemoAgent, make_task_flow
):
    flow = make_task_flow(prompts=["alpha", "beta"], agent="demo-echo")
    started = _run(api, flow["id"])
    wait_for_execution(api, started["execution_id"])
    flow_run = wait_for_flow_run(prefect_api, started["flow_run_id"])
    assert {"taskflows", "agent:demo-echo"} <= set(flow_run["tags"])

    deadline = time.monotonic() + 15
    artifacts: list[dict] = []
    while time.monotonic() < deadline:
        artifacts = prefect_api.post(
            "/artifacts/filter",
            json={"artifacts": {"flow_run_id": {"any_": [started["flow_run_id"]]}}},
        ).json()
        if {a["type"] for a in artifacts} >= {"progress", "table"}:
            break
        time.sleep(0.2)
    by_type = {a["type"]: a for a in artifacts}
    assert by_type["progress"]["data"] == 100.0
    table = by_type["table"]["data"]
    assert "Echo: alpha" in str(table) and "Echo: beta" in str(table)
    assert by_type["table"]["key"].startswith("taskflow-")


def test_per_agent_limit_holds_across_concurrent_runs(
    api: httpx.Client, fake_agent: DemoAgent, make_task_flow
):
    # AGENT_CONCURRENCY=limited=2 in the test system.
    flow = make_task_flow(prompts=["hold the slot [delay=1]"], agent="limited")
    with ThreadPoolExecutor(6) as pool:
        started = list(pool.map(lambda _: _run(api, flow["id"]), range(6)))
    for run in started:
        assert wait_for_execution(api, run["execution_id"], timeout=90)["status"] == "completed"
    assert fake_agent.max_in_flight_by_model["limited"] == 2
    assert fake_agent.prompts_received().count("hold the slot [delay=1]") == 6


@pytest.mark.slow
def test_two_workers_run_every_run_exactly_once_and_survive_losing_one(
    system: System,
    api: httpx.Client,
    prefect_api: httpx.Client,
    fake_agent: DemoAgent,
    make_task_flow,
):
    system.start_worker()
    time.sleep(3)  # let it connect and start polling
    flows = [make_task_flow(prompts=[f"run {n} [delay=0.3]"]) for n in range(12)]
    with ThreadPoolExecutor(6) as pool:
        started = list(pool.map(lambda f: _run(api, f["id"]), flows))
    executions = [wait_for_execution(api, s["execution_id"], timeout=90) for s in started]
    assert all(e["status"] == "completed" for e in executions)
    for n in range(12):
        assert fake_agent.prompts_received().count(f"run {n} [delay=0.3]") == 1
    assert all(e["attempts"] == 1 for e in executions)
    workers_used = {e["worker_name"] for e in executions}
    print(f"12 runs spread over {len(workers_used)} workers")

    # A run survives losing the worker that did not take it.
    flow = make_task_flow(prompts=["one [delay=0.5]", "two [delay=0.5]", "three [delay=0.5]"])
    run = _run(api, flow["id"])
    running = wait_for_execution(api, run["execution_id"], until=lambda e: e["status"] == "running")
    holder_pid = int(running["worker_name"].rsplit("-", 1)[1])
    workers = [c for c in system.supervisor.children if c.name == "worker" and c.running()]
    assert len(workers) == 2
    bystander = next(c for c in workers if c.pid != holder_pid)
    assert bystander.pid is not None and bystander.popen is not None
    os.killpg(bystander.pid, signal.SIGKILL)
    bystander.popen.wait(timeout=10)

    completed = wait_for_execution(api, run["execution_id"])
    assert completed["status"] == "completed" and completed["worker_name"] == running["worker_name"]
    assert wait_for_flow_run(prefect_api, run["flow_run_id"])["state"]["type"] == "COMPLETED"
