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
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg
import pytest

from stack.commands import api_argv, worker_argv
from stack.demo_agent import AgentBehaviour, DemoAgent
from stack.embedded_postgres import EmbeddedPostgres, ensure_databases, prefect_database_url
from stack.prefect_server import prefect_env, start_prefect_server
from stack.supervisor import Child, Supervisor
from tests.fake_agent import free_port, serve_fake_agent

FINAL = ("completed", "failed", "cancelled")


@dataclass
class System:
    """Where each part of the running test system is."""

    database_url: str
    prefect_api_url: str
    api_url: str
    agent: DemoAgent
    agent_url: str
    supervisor: Supervisor
    env: dict[str, str]
    # The embedded PostgreSQL when the tests own it (None with DATABASE_URL).
    embedded_postgres: EmbeddedPostgres | None = None

    def worker(self) -> Child:
        """The worker process currently serving the tests."""
        return [c for c in self.supervisor.children if c.name == "worker" and c.running()][-1]

    def start_worker(self) -> Child:
        """Start another worker process (a replacement after a kill, or a second one)."""
        return self.supervisor.start("worker", worker_argv(), env=self.env)


def _with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + database))


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[tuple[str, EmbeddedPostgres | None]]:
    """(admin URL, the embedded server when the tests own one)."""
    configured = os.environ.get("DATABASE_URL")
    if configured:
        yield _with_database(configured, "postgres"), None
        return
    data_dir = Path(tempfile.mkdtemp(prefix="taskflows-pg-"))
    server = EmbeddedPostgres(data_dir / "pg")
    admin_url = server.start()
    try:
        yield admin_url, server
    finally:
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def system(
    postgres_server: tuple[str, EmbeddedPostgres | None],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[System]:
    postgres_admin_url, embedded = postgres_server
    suffix = uuid.uuid4().hex[:8]
    app_db, prefect_db = f"taskflows_test_{suffix}", f"prefect_test_{suffix}"
    ensure_databases(postgres_admin_url, [app_db, prefect_db], {prefect_db: ["pg_trgm"]})
    database_url = _with_database(postgres_admin_url, app_db)
    work = tmp_path_factory.mktemp("system")
    supervisor = Supervisor(work / "logs")
    try:
        prefect_port = free_port()
        start_prefect_server(
            prefect_port,
            prefect_database_url(postgres_admin_url, prefect_db),
            home=work / "prefect-home",
            log_dir=work / "logs",
            supervisor=supervisor,
        )
        prefect_api_url = f"http://127.0.0.1:{prefect_port}/api"
        with serve_fake_agent() as (agent, agent_url):
            api_port = free_port()
            env = {
                **prefect_env(prefect_api_url, home=work / "prefect-home"),
                "DATABASE_URL": database_url,
                "AGENT_API_URL": agent_url,
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
                "API_PORT": str(api_port),
                "PYTHONUNBUFFERED": "1",
            }
            _apply_migrations(database_url)
            supervisor.start("worker", worker_argv(), env=env)
            api_url = f"http://127.0.0.1:{api_port}"
            supervisor.start(
                "api",
                api_argv(api_port),
                env=env,
                ready_url=f"{api_url}/healthz",
                ready_timeout=90,
            )
            yield System(
                database_url,
                prefect_api_url,
                api_url,
                agent,
                agent_url,
                supervisor,
                env,
                embedded,
            )
    finally:
        supervisor.stop_all()
        _drop_databases(postgres_admin_url, [app_db, prefect_db])


def _apply_migrations(database_url: str) -> None:
    import asyncio

    from flows.database import apply_migrations

    asyncio.run(apply_migrations(database_url))


def _drop_databases(admin_url: str, names: list[str]) -> None:
    try:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            for name in names:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    except psycopg.Error:
        pass  # a throwaway embedded server is deleted anyway


@pytest.fixture(scope="session")
def api(system: System) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=system.api_url, timeout=30) as client:
        yield client


@pytest.fixture(scope="session")
def prefect_api(system: System) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=system.prefect_api_url, timeout=30) as client:
        yield client


@pytest.fixture
def fake_agent(system: System) -> Iterator[DemoAgent]:
    """The fake agent, reset to answer at once; what it receives is recorded."""
    system.agent.behaviour = AgentBehaviour()
    system.agent.requests.clear()
    yield system.agent
    system.agent.behaviour = AgentBehaviour()


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
