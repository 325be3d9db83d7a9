"""Faults the old design failed, each done for real: a flaky or hung agent, cancel, resume."""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from stack.commands import api_argv
from stack.demo_agent import DemoAgent
from stack.ports import free_port
from tests.conftest import System, wait_for_agent_prompt, wait_for_execution, wait_for_flow_run


def _run(api: httpx.Client, flow_id: int) -> dict:
    response = api.post(f"/api/task_flows/{flow_id}/run")
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_transient_agent_errors_are_retried_and_attempts_recorded(
    api: httpx.Client, fake_agent: DemoAgent, make_task_flow
):
    flow = make_task_flow(prompts=["steady", "wobbly [flaky=2]"])
    execution = wait_for_execution(api, _run(api, flow["id"])["execution_id"])

    assert execution["status"] == "completed", execution
    steady, wobbly = execution["prompt_results"]
    assert steady["attempts"] == 1
    assert wobbly["attempts"] == 3 and wobbly["success"] is True
    assert fake_agent.prompts_received().count("wobbly [flaky=2]") == 3


def test_client_errors_fail_at_once_without_retry(
    api: httpx.Client, fake_agent: DemoAgent, make_task_flow
):
    flow = make_task_flow(prompts=["bad request [fail=422]"])
    execution = wait_for_execution(api, _run(api, flow["id"])["execution_id"])

    assert execution["status"] == "failed"
    assert "HTTP 422" in execution["error"] and "demo agent failing" in execution["error"]
    assert fake_agent.prompts_received().count("bad request [fail=422]") == 1
    assert execution["prompt_results"][0]["attempts"] == 1


def test_server_errors_exhaust_retries_then_fail_with_the_status(
    api: httpx.Client, fake_agent: DemoAgent, make_task_flow
):
    flow = make_task_flow(prompts=["down [fail=503]"])
    execution = wait_for_execution(api, _run(api, flow["id"])["execution_id"])

    assert execution["status"] == "failed"
    assert "HTTP 503" in execution["error"]
    assert execution["prompt_results"][0]["attempts"] == 3  # AGENT_RETRIES=2 in the tests
    assert fake_agent.prompts_received().count("down [fail=503]") == 3


def test_hung_agent_times_out_with_an_error_that_says_so(
    api: httpx.Client, fake_agent: DemoAgent, make_task_flow
):
    flow = make_task_flow(prompts=["never answered [hang]", "not reached"])
    started = time.monotonic()
    execution = wait_for_execution(api, _run(api, flow["id"])["execution_id"], timeout=90)
    elapsed = time.monotonic() - started

    assert execution["status"] == "failed"
    assert "timed out" in execution["error"] and "3 s" in execution["error"]
    assert "not reached" not in fake_agent.prompts_received()
    print(f"hung agent: failed after {elapsed:.1f} s (3 attempts x 3 s timeout)")


def test_empty_agent_answer_fails_the_prompt_clearly(
    api: httpx.Client, fake_agent: DemoAgent, make_task_flow
):
    flow = make_task_flow(prompts=["say nothing [empty]"])
    execution = wait_for_execution(api, _run(api, flow["id"])["execution_id"])
    assert execution["status"] == "failed"
    assert "empty answer" in execution["error"]


def test_cancel_abandons_the_agent_call_in_flight(
    api: httpx.Client, prefect_api: httpx.Client, fake_agent: DemoAgent, make_task_flow
):
    flow = make_task_flow(prompts=["first", "long one [delay=30]", "never"])
    started = _run(api, flow["id"])
    wait_for_execution(
        api,
        started["execution_id"],
        until=lambda e: e["status"] == "running" and e["current_prompt_index"] == 1,
    )
    wait_for_agent_prompt(fake_agent, "long one [delay=30]")

    clock = time.monotonic()
    response = api.post(f"/api/executions/{started['execution_id']}/cancel")
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "cancelled"

    flow_run = wait_for_flow_run(prefect_api, started["flow_run_id"])
    took = time.monotonic() - clock
    assert flow_run["state"]["type"] == "CANCELLED"
    execution = api.get(f"/api/executions/{started['execution_id']}").json()
    assert execution["status"] == "cancelled"
    assert [r["prompt"] for r in execution["prompt_results"]] == ["first"]
    assert "never" not in fake_agent.prompts_received()
    print(f"cancel: flow run Cancelled {took:.2f} s after the request")
    assert took < 30, "the 30 s agent call was abandoned, not waited for"

    again = api.post(f"/api/executions/{started['execution_id']}/cancel")
    assert again.status_code == 409
    assert "already ended" in again.json()["error"]


def test_retry_resumes_at_the_failed_prompt(
    api: httpx.Client, fake_agent: DemoAgent, make_task_flow
):
    flow = make_task_flow(prompts=["one", "two [flaky=3]", "three"])
    failed = wait_for_execution(api, _run(api, flow["id"])["execution_id"])
    assert failed["status"] == "failed"  # 3 attempts, all refused

    response = api.post(f"/api/executions/{failed['id']}/retry")
    assert response.status_code == 200, response.text
    retry = response.json()
    assert retry["retry_of"] == failed["id"] and retry["execution_id"] != failed["id"]

    resumed = wait_for_execution(api, retry["execution_id"])
    assert resumed["status"] == "completed"
    assert resumed["retry_of"] == failed["id"] and resumed["trigger"] == "retry"
    assert [r["response"] for r in resumed["prompt_results"]] == [
        "Echo: one",
        "Echo: two",
        "Echo: three",
    ]
    assert fake_agent.prompts_received().count("one") == 1, "a prompt that succeeded is not resent"

    not_again = api.post(f"/api/executions/{resumed['id']}/retry")
    assert not_again.status_code == 409


@contextmanager
def _workers_paused(system: System) -> Iterator[None]:
    """SIGSTOP every worker: nothing claims a run until the block ends (SIGCONT)."""
    workers = [c for c in system.supervisor.children if c.name == "worker" and c.running()]
    pids = [c.pid for c in workers if c.pid is not None]
    assert pids
    for pid in pids:
        os.killpg(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            os.killpg(pid, signal.SIGCONT)


def test_cancel_of_a_queued_run_cancels_its_flow_run(
    system: System,
    api: httpx.Client,
    prefect_api: httpx.Client,
    fake_agent: DemoAgent,
    make_task_flow,
):
    prompt = f"quick {uuid.uuid4().hex[:8]}"
    flow = make_task_flow(prompts=[prompt])
    # With the workers paused the run stays queued: the cancel must find it so.
    with _workers_paused(system):
        started = _run(api, flow["id"])
        assert api.get(f"/api/executions/{started['execution_id']}").json()["status"] == "queued"
        response = api.post(f"/api/executions/{started['execution_id']}/cancel")
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "cancelled"
    flow_run = wait_for_flow_run(prefect_api, started["flow_run_id"])
    assert flow_run["state"]["type"] == "CANCELLED"
    assert api.get(f"/api/executions/{started['execution_id']}").json()["status"] == "cancelled"
    # The workers, awake again, see the cancelled run's wake-up and leave it alone: a run
    # after it completes, and the cancelled prompt never reached the agent.
    after = _run(api, make_task_flow(prompts=["after the cancel"])["id"])
    assert wait_for_execution(api, after["execution_id"])["status"] == "completed"
    assert prompt not in fake_agent.prompts_received()
    assert api.get(f"/api/executions/{started['execution_id']}").json()["status"] == "cancelled"


def test_idempotency_key_returns_the_same_execution(
    api: httpx.Client, fake_agent: DemoAgent, make_task_flow
):
    flow = make_task_flow(prompts=["once"])
    headers = {"Idempotency-Key": f"click-{flow['id']}"}
    first = api.post(f"/api/task_flows/{flow['id']}/run", headers=headers).json()
    second = api.post(f"/api/task_flows/{flow['id']}/run", headers=headers)
    assert second.json()["execution_id"] == first["execution_id"]
    assert second.headers.get("Idempotent-Replayed") == "true"
    wait_for_execution(api, first["execution_id"])
    assert fake_agent.prompts_received().count("once") == 1


def test_cancel_in_the_prefect_ui_cancels_the_execution(
    api: httpx.Client, prefect_api: httpx.Client, fake_agent: DemoAgent, make_task_flow
):
    # The slow prompt outlasts the worker's check for UI cancels (every 2 s) many times
    # over, so a loaded machine cannot let the run finish before the cancel lands.
    flow = make_task_flow(prompts=["go", "slow [delay=20]", "never sent"])
    started = _run(api, flow["id"])
    wait_for_execution(
        api,
        started["execution_id"],
        until=lambda e: e["status"] == "running" and e["current_prompt_index"] == 1,
    )
    wait_for_agent_prompt(fake_agent, "slow [delay=20]")
    # What the Prefect UI's "Cancel" sends.
    response = prefect_api.post(
        f"/flow_runs/{started['flow_run_id']}/set_state",
        json={"state": {"type": "CANCELLING", "name": "Cancelling"}, "force": True},
    )
    assert response.status_code in (200, 201), response.text
    clock = time.monotonic()
    execution = wait_for_execution(api, started["execution_id"])
    print(f"Prefect UI cancel: execution cancelled after {time.monotonic() - clock:.2f} s")
    assert execution["status"] == "cancelled"
    assert wait_for_flow_run(prefect_api, started["flow_run_id"])["state"]["type"] == "CANCELLED"
    assert "never sent" not in fake_agent.prompts_received()


def _api_with(system: System, name: str, **env: str) -> Iterator[httpx.Client]:
    """Another API process with some of its dependencies pointed at a dead port."""
    port = free_port()
    child = system.supervisor.start(name, api_argv(port), env={**system.env, **env})
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            deadline = time.monotonic() + 90
            while True:  # its /healthz answers 503, so wait for any answer
                try:
                    client.get("/healthz")
                    break
                except httpx.TransportError:
                    assert child.running(), child.log_tail()
                    assert time.monotonic() < deadline, "the API never answered"
                    time.sleep(0.2)
            yield client
    finally:
        child.stop()


@contextmanager
def _api_without_prefect(system: System) -> Iterator[httpx.Client]:
    yield from _api_with(
        system, "api-no-prefect", PREFECT_API_URL=f"http://127.0.0.1:{free_port()}/api"
    )


@contextmanager
def _api_without_database(system: System) -> Iterator[httpx.Client]:
    dead = f"postgresql://postgres:x@127.0.0.1:{free_port()}/taskflows?connect_timeout=2"
    yield from _api_with(system, "api-no-database", DATABASE_URL=dead)


def test_health_and_the_api_say_503_when_prefect_is_down(
    system: System, make_task_flow
) -> None:
    flow = make_task_flow(prompts=["never runs"])
    with _api_without_prefect(system) as client:
        health = client.get("/healthz")
        assert health.status_code == 503
        body = health.json()
        assert body["ok"] is False and body["database"] == "ok"
        assert "Prefect" in body["prefect"] and body["prefect"] != "ok"
        started = client.post(f"/api/task_flows/{flow['id']}/run")
        assert started.status_code == 503, started.text
        assert "Prefect" in started.json()["error"]
        assert "Traceback" not in started.text


def test_health_and_the_api_say_503_when_postgresql_is_down(system: System) -> None:
    with _api_without_database(system) as client:
        health = client.get("/healthz")
        assert health.status_code == 503
        body = health.json()
        assert body["ok"] is False and body["database"] != "ok"
        assert "database" in body["database"]
        for path in ("/api/task_flows", "/api/executions/recent"):
            asked = time.monotonic()
            answer = client.get(path)
            # DB_WAIT_S (5 s by default) bounds the wait: not the pool's 30 s.
            assert time.monotonic() - asked < 20, f"{path} took {time.monotonic() - asked:.1f} s"
            assert answer.status_code == 503, answer.text
            assert "database" in answer.json()["error"].lower()
            assert "psycopg" not in answer.text and "Traceback" not in answer.text
