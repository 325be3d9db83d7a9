"""Crashes and restarts, done for real: kill -9 and SIGTERM of the worker, Prefect's own
Retry, an API restart. The old runner left executions `running` forever in each case."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import httpx
import psycopg
import pytest

from flows.settings import PROJECT_ROOT
from stack.commands import worker_argv
from stack.demo_agent import DemoAgent
from tests.conftest import System, wait_for_agent_prompt, wait_for_execution, wait_for_flow_run
from worker.service import LISTEN_APPLICATION_NAME

pytestmark = pytest.mark.slow


def _run(api: httpx.Client, flow_id: int) -> dict:
    response = api.post(f"/api/task_flows/{flow_id}/run")
    assert response.status_code == 200, response.text
    return dict(response.json())


def _mid_run(api: httpx.Client, agent: DemoAgent, execution_id: int, slow_prompt: str) -> None:
    """Wait until the first prompt is done and the second (slow) one is at the agent."""
    wait_for_execution(
        api,
        execution_id,
        until=lambda e: e["status"] == "running" and e["current_prompt_index"] >= 1,
    )
    wait_for_agent_prompt(agent, slow_prompt)


def test_kill_9_of_the_worker_fails_the_execution_and_retry_resumes_it(
    system: System,
    api: httpx.Client,
    prefect_api: httpx.Client,
    fake_agent: DemoAgent,
    make_task_flow,
):
    flow = make_task_flow(prompts=["before the crash", "during [delay=2.5]", "after"])
    started = _run(api, flow["id"])
    _mid_run(api, fake_agent, started["execution_id"], "during [delay=2.5]")

    worker = system.worker()
    assert worker.pid is not None
    os.killpg(worker.pid, signal.SIGKILL)
    killed_at = time.monotonic()
    try:
        failed = wait_for_execution(api, started["execution_id"], timeout=60)
        detected_after = time.monotonic() - killed_at
    finally:
        system.start_worker()
    print(f"kill -9: execution failed {detected_after:.1f} s after the worker died")
    assert failed["status"] == "failed"
    assert "crashed" in failed["error"] and "Retry" in failed["error"]
    assert [r["prompt"] for r in failed["prompt_results"]] == ["before the crash"]
    assert wait_for_flow_run(prefect_api, started["flow_run_id"])["state"]["type"] == "CRASHED"

    retry = api.post(f"/api/executions/{started['execution_id']}/retry").json()
    resumed = wait_for_execution(api, retry["execution_id"])
    assert resumed["status"] == "completed"
    assert [r["response"] for r in resumed["prompt_results"]] == [
        "Echo: before the crash",
        "Echo: during",
        "Echo: after",
    ]
    assert fake_agent.prompts_received().count("before the crash") == 1


def test_sigterm_of_the_worker_cancels_runs_in_flight_resumably(
    system: System,
    api: httpx.Client,
    prefect_api: httpx.Client,
    fake_agent: DemoAgent,
    make_task_flow,
):
    flow = make_task_flow(prompts=["done first", "interrupted [delay=2.5]", "last"])
    started = _run(api, flow["id"])
    _mid_run(api, fake_agent, started["execution_id"], "interrupted [delay=2.5]")

    worker = system.worker()
    assert worker.popen is not None
    clock = time.monotonic()
    worker.popen.send_signal(signal.SIGTERM)
    try:
        exit_code = worker.popen.wait(timeout=30)
        stopped_after = time.monotonic() - clock
    finally:
        system.start_worker()
    print(f"SIGTERM: worker exited with {exit_code} after {stopped_after:.2f} s")
    assert exit_code == 0, worker.log_tail()

    execution = api.get(f"/api/executions/{started['execution_id']}").json()
    assert execution["status"] == "cancelled"
    assert "worker stopped" in execution["error"]
    assert wait_for_flow_run(prefect_api, started["flow_run_id"])["state"]["type"] == "CANCELLED"

    retry = api.post(f"/api/executions/{started['execution_id']}/retry").json()
    resumed = wait_for_execution(api, retry["execution_id"])
    assert resumed["status"] == "completed"
    assert fake_agent.prompts_received().count("done first") == 1


def test_retry_in_the_prefect_ui_resumes_the_same_execution(
    api: httpx.Client, prefect_api: httpx.Client, fake_agent: DemoAgent, make_task_flow
):
    flow = make_task_flow(prompts=["fine", "shaky [flaky=3]", "end"])
    started = _run(api, flow["id"])
    failed = wait_for_execution(api, started["execution_id"])
    assert failed["status"] == "failed"
    assert wait_for_flow_run(prefect_api, started["flow_run_id"])["state"]["type"] == "FAILED"

    # What the Prefect UI's "Retry" button sends.
    response = prefect_api.post(
        f"/flow_runs/{started['flow_run_id']}/set_state",
        json={
            "state": {"type": "SCHEDULED", "name": "AwaitingRetry", "message": "Retry from the UI"},
            "force": True,
        },
    )
    assert response.status_code in (200, 201), response.text

    resumed = wait_for_execution(
        api,
        started["execution_id"],
        until=lambda e: (
            e["status"] == "completed" or (e["attempts"] >= 2 and e["status"] == "failed")
        ),
    )
    assert resumed["status"] == "completed", resumed
    assert resumed["attempts"] == 2
    assert [r["response"] for r in resumed["prompt_results"]] == [
        "Echo: fine",
        "Echo: shaky",
        "Echo: end",
    ]
    assert fake_agent.prompts_received().count("fine") == 1
    assert wait_for_flow_run(prefect_api, started["flow_run_id"])["state"]["type"] == "COMPLETED"


def test_restarting_the_api_mid_run_loses_nothing(
    system: System, api: httpx.Client, fake_agent: DemoAgent, make_task_flow
):
    flow = make_task_flow(prompts=["a", "b [delay=2]", "c"])
    started = _run(api, flow["id"])
    _mid_run(api, fake_agent, started["execution_id"], "b [delay=2]")

    old_api = [c for c in system.supervisor.children if c.name == "api" and c.running()][-1]
    old_api.stop()
    system.supervisor.start(
        "api",
        old_api.argv,
        env=system.env,
        ready_url=f"{system.api_url}/healthz",
        ready_timeout=60,
    )
    execution = wait_for_execution(api, started["execution_id"])
    assert execution["status"] == "completed"
    assert [r["prompt"] for r in execution["prompt_results"]] == ["a", "b [delay=2]", "c"]
    recent = api.get("/api/executions/recent", params={"limit": 3}).json()
    assert recent[0]["id"] == started["execution_id"]
    assert started["execution_id"] not in [
        e["id"] for e in api.get("/api/executions/active").json()
    ]


@pytest.mark.skipif(bool(os.environ.get("DATABASE_URL")), reason="needs a PostgreSQL the tests own")
def test_restarting_postgresql_mid_run_loses_no_progress(
    system: System, api: httpx.Client, fake_agent: DemoAgent, make_task_flow
):
    assert system.embedded_postgres is not None
    flow = make_task_flow(prompts=["p1", "p2 [delay=1.5]", "p3", "p4"])
    started = _run(api, flow["id"])
    _mid_run(api, fake_agent, started["execution_id"], "p2 [delay=1.5]")

    system.embedded_postgres.stop()
    time.sleep(1.0)  # a second of downtime (what is tested), not a wait for something
    system.embedded_postgres.start()

    execution = wait_for_execution(api, started["execution_id"], timeout=120)
    assert execution["status"] == "completed", execution
    assert [r["prompt"] for r in execution["prompt_results"]] == [
        "p1",
        "p2 [delay=1.5]",
        "p3",
        "p4",
    ]


def _listen_backend(db: psycopg.Connection[Any], application_name: str) -> int | None:
    row = db.execute(
        "SELECT pid FROM pg_stat_activity "
        "WHERE datname = current_database() AND application_name = %s",
        (application_name,),
    ).fetchone()
    return None if row is None else int(row["pid"])


def _wait_for_listen_backend(
    db: psycopg.Connection[Any], application_name: str, other_than: int | None, timeout: float
) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        backend = _listen_backend(db, application_name)
        if backend is not None and backend != other_than:
            return backend
        time.sleep(0.05)
    raise AssertionError(f"no LISTEN connection {application_name!r} within {timeout} s")


def test_a_worker_whose_listen_connection_is_killed_listens_again_and_claims_new_runs_at_once(
    system: System, api: httpx.Client, db: psycopg.Connection[Any], make_task_flow
):
    flow = make_task_flow(prompts=["after the LISTEN connection was cut"])
    # A worker that polls Prefect only every 2 minutes: within the test, only a NOTIFY on
    # its LISTEN connection can wake it for a new run. The session's worker would claim the
    # run by polling, so it makes way for the test.
    system.worker().stop()
    worker = system.supervisor.start(
        "worker", worker_argv(), env={**system.env, "WORKER_POLL_S": "120"}, cwd=PROJECT_ROOT
    )
    try:
        application_name = f"{LISTEN_APPLICATION_NAME}-{worker.pid}"
        backend = _wait_for_listen_backend(db, application_name, None, timeout=90)
        # Cut it several times in a row: each time it is back at once (a connection that
        # worked resets the backoff), never stuck waiting.
        for _ in range(3):
            db.execute("SELECT pg_terminate_backend(%s)", (backend,))
            clock = time.monotonic()
            backend = _wait_for_listen_backend(db, application_name, backend, timeout=10)
            print(f"LISTEN again {time.monotonic() - clock:.2f} s after pg_terminate_backend")

        clock = time.monotonic()
        started = _run(api, flow["id"])
        done = wait_for_execution(api, started["execution_id"], timeout=60)
        claimed_after = time.monotonic() - clock
    finally:
        worker.stop()
        system.start_worker()
    assert done["status"] == "completed", done
    assert claimed_after < 30, f"the run waited {claimed_after:.1f} s: it was found by polling"
    assert "Listening again" in worker.log_tail(200), worker.log_tail()
