"""The test system: a real PostgreSQL, a real Prefect server, the real worker and API
processes, and a fake OpenAI-compatible agent over HTTP on loopback.

PostgreSQL is `DATABASE_URL`'s server when it is set (fresh databases are created on it and
dropped afterwards), otherwise a throwaway embedded one. Everything else is started here
for the session, on free ports, and stopped at the end.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from stack.agent_thread import serve_demo_agent
from stack.demo_agent import AgentBehaviour, DemoAgent
from stack.system import System, SystemOptions, start_system

FINAL = ("completed", "failed", "cancelled")

# What only the tests want: failures and crashes seen in seconds, not in minutes.
TEST_SPEED_ENV = {
    "AGENT_TIMEOUT_S": "3",
    "AGENT_RETRIES": "2",
    "AGENT_RETRY_DELAY_S": "0.2",
    "WORKER_POLL_S": "1",
    # Crash detection in seconds, not the production half minute.
    "LEASE_RENEW_S": "1",
    "LEASE_EXPIRY_S": "6",
    "RECONCILE_EVERY_S": "1",
    # Only the agent named "limited" is limited, so other tests pay nothing.
    "AGENT_CONCURRENCY": "limited=2",
    # Runs longer than this get a progress artifact (tests/test_prefect_native.py).
    "PROGRESS_INTERVAL_S": "0.3",
}


@pytest.fixture(scope="session")
def _served_agent() -> Iterator[tuple[DemoAgent, str]]:
    """The fake agent: the demo agent over real HTTP, in this process so tests can steer it."""
    with serve_demo_agent() as served:
        yield served


@pytest.fixture(scope="session")
def system(
    _served_agent: tuple[DemoAgent, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[System]:
    """The whole system, started once for the session; see the module docstring."""
    # An embedded cluster is large: it lives outside pytest's kept temporary directories.
    work_dir = Path(tempfile.mkdtemp(prefix="taskflows-test-"))
    options = SystemOptions(
        work_dir=work_dir,
        log_dir=tmp_path_factory.mktemp("system") / "logs",
        database_url=os.environ.get("DATABASE_URL") or None,
        fresh_databases="test",
        agent_url=_served_agent[1],
        env=TEST_SPEED_ENV,
        api_ready_timeout=90,
    )
    try:
        with start_system(options) as running:
            yield running
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def api(system: System) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=system.api_url, timeout=30) as client:
        yield client


@pytest.fixture(scope="session")
def prefect_api(system: System) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=system.prefect_api_url, timeout=30) as client:
        yield client


@pytest.fixture
def fake_agent(system: System, _served_agent: tuple[DemoAgent, str]) -> Iterator[DemoAgent]:
    """The fake agent, reset to answer at once; what it receives is recorded."""
    agent = _served_agent[0]
    agent.behaviour = AgentBehaviour()
    agent.requests.clear()
    yield agent
    agent.behaviour = AgentBehaviour()


@pytest.fixture
def db(system: System) -> Iterator[psycopg.Connection[Any]]:
    """A direct connection to the taskflows database, to check rows as they are stored."""
    from psycopg.rows import dict_row

    with psycopg.connect(system.database_url, autocommit=True, row_factory=dict_row) as conn:
        yield conn


@pytest.fixture
def make_task_flow(api: httpx.Client) -> Callable[..., dict[str, Any]]:
    """Create a task flow through the API; unique name unless given."""

    def make(**fields: Any) -> dict[str, Any]:
        body = {"call_name": f"flow-{uuid.uuid4().hex[:10]}", "prompts": ["Say hello"], **fields}
        response = api.post("/api/task_flows", json=body)
        assert response.status_code in (200, 201), response.text
        return dict(response.json())

    return make


def wait_for_execution(
    api: httpx.Client,
    execution_id: int,
    until: Callable[[dict[str, Any]], bool] = lambda e: e["status"] in FINAL,
    timeout: float = 60.0,
) -> dict[str, Any]:
    """Poll the API until the execution satisfies `until`; fail with its last state."""
    deadline = time.monotonic() + timeout
    last: dict[str, Any] = {}
    while time.monotonic() < deadline:
        response = api.get(f"/api/executions/{execution_id}")
        assert response.status_code == 200, response.text
        last = response.json()
        if until(last):
            return last
        time.sleep(0.1)
    raise AssertionError(f"execution {execution_id} never got there; last seen: {last}")


def wait_for_flow_run(
    prefect_api: httpx.Client, flow_run_id: str, timeout: float = 30.0
) -> dict[str, Any]:
    """Poll the Prefect API until the flow run is in a final state; return the flow run.

    The execution ends a moment before its flow run: the flow records the result first.
    """
    deadline = time.monotonic() + timeout
    flow_run: dict[str, Any] = {}
    while time.monotonic() < deadline:
        flow_run = prefect_api.get(f"/flow_runs/{flow_run_id}").json()
        if flow_run["state"]["type"] in ("COMPLETED", "FAILED", "CANCELLED", "CRASHED"):
            return flow_run
        time.sleep(0.1)
    raise AssertionError(f"flow run {flow_run_id} never ended; last seen: {flow_run.get('state')}")


def wait_for_agent_prompt(agent: DemoAgent, prompt: str, timeout: float = 30.0) -> None:
    """Wait until the fake agent has received `prompt` (it is being answered now)."""
    deadline = time.monotonic() + timeout
    while prompt not in agent.prompts_received():
        if time.monotonic() > deadline:
            raise AssertionError(f"the agent never received {prompt!r}")
        time.sleep(0.02)
