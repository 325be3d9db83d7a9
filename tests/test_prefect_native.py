"""What a Prefect user sees: artifacts and tags on each run, per-agent concurrency limits
enforced through Prefect, and several workers sharing one work pool."""

from __future__ import annotations

import json
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from flows.channels import WORKER_WAKEUP
from stack.demo_agent import DemoAgent
from tests.conftest import System, wait_for_execution, wait_for_flow_run


def _run(api: httpx.Client, flow_id: int) -> dict:
    response = api.post(f"/api/task_flows/{flow_id}/run")
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_each_run_has_progress_and_results_artifacts_and_tags(
    api: httpx.Client, prefect_api: httpx.Client, fake_agent: DemoAgent, make_task_flow
):
    # The run lasts longer than PROGRESS_INTERVAL_S (0.3 s in tests), so it gets progress.
    flow = make_task_flow(prompts=["alpha [delay=1]", "beta"], agent="demo-echo")
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


def _wait_online(prefect_api: httpx.Client, worker_pid: int, timeout: float = 60.0) -> str:
    """Wait until Prefect lists the worker process `worker_pid` as online; return its name."""
    deadline = time.monotonic() + timeout
    workers: list[dict] = []
    while time.monotonic() < deadline:
        workers = prefect_api.post("/work_pools/taskflows/workers/filter", json={}).json()
        for worker in workers:
            if worker["name"].endswith(f"-{worker_pid}") and worker["status"] == "ONLINE":
                return str(worker["name"])
        time.sleep(0.2)
    raise AssertionError(f"worker {worker_pid} never came online; workers: {workers}")


@pytest.mark.slow
def test_two_workers_run_every_run_exactly_once_and_survive_losing_one(
    system: System,
    api: httpx.Client,
    prefect_api: httpx.Client,
    fake_agent: DemoAgent,
    make_task_flow,
):
    first = system.worker()
    second = system.start_worker()
    assert first.pid is not None and second.pid is not None
    second_name = _wait_online(prefect_api, second.pid)

    # While the first worker is paused, only the second can take runs: it must run them.
    os.killpg(first.pid, signal.SIGSTOP)
    try:
        solo = [make_task_flow(prompts=[f"solo {n}"]) for n in range(3)]
        started = [_run(api, f["id"]) for f in solo]
        executions = [wait_for_execution(api, s["execution_id"], timeout=90) for s in started]
    finally:
        os.killpg(first.pid, signal.SIGCONT)
    assert [e["status"] for e in executions] == ["completed"] * 3
    assert {e["worker_name"] for e in executions} == {second_name}

    # Both serving the pool: every run runs exactly once, whichever worker claims it.
    flows = [make_task_flow(prompts=[f"run {n} [delay=0.3]"]) for n in range(12)]
    with ThreadPoolExecutor(6) as pool:
        started = list(pool.map(lambda f: _run(api, f["id"]), flows))
    executions = [wait_for_execution(api, s["execution_id"], timeout=90) for s in started]
    assert all(e["status"] == "completed" for e in executions)
    for n in range(12):
        assert fake_agent.prompts_received().count(f"run {n} [delay=0.3]") == 1
    assert all(e["attempts"] == 1 for e in executions)
    assert all(e["worker_name"].startswith("taskflows-") for e in executions)

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


def _flow_run_logs(prefect_api: httpx.Client, flow_run_id: str) -> list[dict]:
    response = prefect_api.post(
        "/logs/filter", json={"logs": {"flow_run_id": {"any_": [flow_run_id]}}, "limit": 200}
    )
    assert response.status_code == 200, response.text
    return list(response.json())


def _task_runs(prefect_api: httpx.Client, flow_run_id: str, count: int) -> list[dict]:
    """The flow run's task runs once `count` of them are final (the server records task runs
    from the worker's events, a moment after the flow run ends)."""
    deadline = time.monotonic() + 30
    task_runs: list[dict] = []
    while time.monotonic() < deadline:
        task_runs = prefect_api.post(
            "/task_runs/filter", json={"flow_runs": {"id": {"any_": [flow_run_id]}}}
        ).json()
        final = [t for t in task_runs if t["state"]["type"] in ("COMPLETED", "FAILED")]
        if len(final) >= count:
            return task_runs
        time.sleep(0.2)
    raise AssertionError(f"task runs never all final: {[t['state'] for t in task_runs]}")


def test_the_prefect_ui_shows_each_prompt_and_the_flow_logs_but_no_task_info_records(
    api: httpx.Client, prefect_api: httpx.Client, fake_agent: DemoAgent, make_task_flow
):
    flow = make_task_flow(prompts=["first", "second", "third"])
    started = _run(api, flow["id"])
    assert wait_for_execution(api, started["execution_id"])["status"] == "completed"
    wait_for_flow_run(prefect_api, started["flow_run_id"])

    task_runs = _task_runs(prefect_api, started["flow_run_id"], 3)
    assert sorted(t["name"] for t in task_runs) == ["prompt 1/3", "prompt 2/3", "prompt 3/3"]
    assert all(t["state"]["type"] == "COMPLETED" and t["total_run_time"] > 0 for t in task_runs)

    deadline = time.monotonic() + 15
    messages: list[str] = []
    while time.monotonic() < deadline:  # logs are shipped in batches
        logs = _flow_run_logs(prefect_api, started["flow_run_id"])
        messages = [log["message"] for log in logs]
        if any("Finished in state Completed" in m for m in messages):
            break
        time.sleep(0.2)
    # The flow run's own records reach the UI; the per-prompt "Finished in state" INFO
    # records stay in the worker's log (the task runs' states say the same).
    flow_level = [log for log in logs if log["task_run_id"] is None]
    assert any("Finished in state Completed" in log["message"] for log in flow_level), messages
    assert not [log for log in logs if log["task_run_id"] is not None], messages


def test_a_failed_prompt_still_logs_its_error_to_the_prefect_ui(
    api: httpx.Client, prefect_api: httpx.Client, fake_agent: DemoAgent, make_task_flow
):
    flow = make_task_flow(prompts=["fine", "broken [fail=400]"])
    started = _run(api, flow["id"])
    assert wait_for_execution(api, started["execution_id"])["status"] == "failed"
    assert wait_for_flow_run(prefect_api, started["flow_run_id"])["state"]["type"] == "FAILED"

    deadline = time.monotonic() + 15
    task_errors: list[dict] = []
    while time.monotonic() < deadline and not task_errors:
        logs = _flow_run_logs(prefect_api, started["flow_run_id"])
        task_errors = [log for log in logs if log["task_run_id"] and log["level"] >= 40]
        time.sleep(0.2)
    assert task_errors, "the failed prompt's error never reached the Prefect UI"
    assert any("Finished in state Failed" in log["message"] for log in task_errors)


def test_the_lean_server_still_shows_task_runs_with_their_states_and_the_run_graph(
    api: httpx.Client, prefect_api: httpx.Client, fake_agent: DemoAgent, make_task_flow
):
    # The event persister is off by default (stack/prefect_server.py): only the Events page
    # loses the run's events. Everything the flow-run page shows comes from elsewhere.
    services = prefect_api.get("/admin/settings").json()["server"]["services"]
    assert services["event_persister"]["enabled"] is False
    # The task-run recorder writes in batches (stack/prefect_server.RECORDER_BATCHING): the
    # task runs below must still all be there, each with its states. The worker sends no
    # event for a task run's first, momentary Pending state (worker/engine_patches.py):
    # the UI shows each prompt Running, then Completed.
    recorder = services["task_run_recorder"]
    assert recorder["enabled"] is True
    assert (recorder["batch_size"], recorder["flush_interval"]) == (50, 1)

    flow = make_task_flow(prompts=["one [delay=0.1]", "two [delay=0.1]"])
    started = _run(api, flow["id"])
    assert wait_for_execution(api, started["execution_id"])["status"] == "completed"
    flow_run = wait_for_flow_run(prefect_api, started["flow_run_id"])
    assert flow_run["state"]["type"] == "COMPLETED" and flow_run["total_run_time"] > 0

    flow_states = prefect_api.get(
        "/flow_run_states/", params={"flow_run_id": started["flow_run_id"]}
    ).json()
    # The worker claims an API-started run in its execution row, not by proposing Pending
    # (worker/service.py `_claim`): the flow run goes from Scheduled straight to Running.
    assert [s["type"] for s in flow_states] == ["SCHEDULED", "RUNNING", "COMPLETED"]

    task_runs = _task_runs(prefect_api, started["flow_run_id"], 2)
    for task_run in task_runs:
        assert task_run["start_time"] and task_run["end_time"] and task_run["total_run_time"] > 0
        states = prefect_api.get("/task_run_states/", params={"task_run_id": task_run["id"]})
        assert [s["type"] for s in states.json()] == ["RUNNING", "COMPLETED"]

    # The run graph of the flow-run page: one node per prompt, in order.
    graph = prefect_api.get(f"/flow_runs/{started['flow_run_id']}/graph-v2").json()
    nodes = sorted((node for _, node in graph["nodes"]), key=lambda node: node["start_time"])
    assert [node["label"] for node in nodes] == ["prompt 1/2", "prompt 2/2"]


def test_a_stale_announcement_of_a_finished_run_does_not_run_it_again(
    api: httpx.Client, prefect_api: httpx.Client, db, fake_agent: DemoAgent, make_task_flow
):
    flow = make_task_flow(prompts=["stale [delay=0.1]"])
    first = _run(api, flow["id"])
    assert wait_for_execution(api, first["execution_id"])["status"] == "completed"
    finished = wait_for_flow_run(prefect_api, first["flow_run_id"])
    assert finished["state"]["type"] == "COMPLETED"

    # The run announced again, as a worker sees it that held the announcement while another
    # worker ran the run. Then a new run: announcements are claimed in order, so once the
    # new one has run, the stale one has been dealt with.
    db.execute("SELECT pg_notify(%s, %s)", (WORKER_WAKEUP, json.dumps(finished)))
    later = _run(api, make_task_flow(prompts=["after the stale one"])["id"])
    assert wait_for_execution(api, later["execution_id"])["status"] == "completed"

    states = prefect_api.get("/flow_run_states/", params={"flow_run_id": first["flow_run_id"]})
    assert [s["type"] for s in states.json()] == ["SCHEDULED", "RUNNING", "COMPLETED"]
    assert fake_agent.prompts_received().count("stale [delay=0.1]") == 1
