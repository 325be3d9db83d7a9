"""The Prefect server's two topologies: one process (the default), and split over Redis (the
API and the background services in separate processes, `prefect-redis` messaging), which
`make up`, the tests and the bench start when REDIS_URL is set. Both must give a Prefect user
the same runs, task runs and artifacts. The split tests need a Redis server (REDIS_URL, else
127.0.0.1:6379) and are skipped with a reason where none answers."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from stack.demo_agent import DemoAgent
from stack.prefect_server import (
    RECORDER_BATCHING,
    UNUSED_SERVICES,
    prefect_services_env,
    private_redis_database,
)
from stack.supervisor import Supervisor
from stack.system import SystemOptions, start_system

REDIS_URL = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"


def _redis_answers(url: str) -> str | None:
    """None when Redis answers at `url`, else why not."""
    import redis

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=2)
        try:
            client.ping()
        finally:
            client.close()
    except redis.RedisError as exc:
        return f"no Redis at {url} ({exc}); set REDIS_URL to run the split topology tests"
    return None


def test_unused_prefect_services_are_off_unless_asked_for(
    prefect_api: httpx.Client, monkeypatch: pytest.MonkeyPatch
):
    settings = prefect_api.get("/admin/settings").json()["server"]["services"]
    assert settings["pause_expirations"]["enabled"] is False
    assert settings["event_persister"]["enabled"] is False  # only the Events page reads it
    # What taskflows relies on keeps running: alerts (automations: triggers, which also runs
    # the actions, and late_runs for late alerts) work the moment one is set.
    for service in ("scheduler", "task_run_recorder", "late_runs", "triggers"):
        assert settings[service]["enabled"] is True, service

    # The user's variable wins over our default.
    monkeypatch.delenv("PREFECT_SERVER_SERVICES_TRIGGERS_ENABLED", raising=False)
    assert "PREFECT_SERVER_SERVICES_TRIGGERS_ENABLED" not in prefect_services_env()
    monkeypatch.setenv("PREFECT_SERVER_SERVICES_PAUSE_EXPIRATIONS_ENABLED", "true")
    assert "PREFECT_SERVER_SERVICES_PAUSE_EXPIRATIONS_ENABLED" not in prefect_services_env()
    assert set(prefect_services_env()) < set(UNUSED_SERVICES) | set(RECORDER_BATCHING)


def test_the_test_system_runs_the_topology_redis_url_asks_for(system) -> None:
    names = [c.name for c in system.supervisor.children if c.running()]
    assert "prefect-server" in names
    # One process by default; split when REDIS_URL is set.
    assert ("prefect-services" in names) == bool(os.environ.get("REDIS_URL"))


@pytest.fixture(scope="module")
def split_system(
    _served_agent: tuple[DemoAgent, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str, Supervisor]]:
    """A second whole system whose Prefect server runs split over Redis, on a Redis database
    of its own: (API URL, Prefect API URL, its supervisor)."""
    reason = _redis_answers(REDIS_URL)
    if reason is not None:
        pytest.skip(reason)
    work_dir = Path(tempfile.mkdtemp(prefix="taskflows-split-"))
    options = SystemOptions(
        work_dir=work_dir,
        log_dir=tmp_path_factory.mktemp("split") / "logs",
        database_url=os.environ.get("DATABASE_URL") or None,
        fresh_databases="split",
        agent_url=_served_agent[1],
        api_ready_timeout=120,
        prefect_ready_timeout=300,
    )
    previous = os.environ.get("REDIS_URL")
    try:
        with private_redis_database(REDIS_URL) as redis_url:
            # start_prefect_server takes the topology from REDIS_URL, as `make up` does.
            os.environ["REDIS_URL"] = redis_url
            try:
                running = start_system(options)
            finally:
                if previous is None:
                    os.environ.pop("REDIS_URL", None)
                else:
                    os.environ["REDIS_URL"] = previous
            with running:  # stopped before its Redis database is emptied
                yield running.api_url, running.prefect_api_url, running.supervisor
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)


def test_split_prefect_server_runs_api_and_services_in_separate_processes(
    split_system: tuple[str, str, Supervisor],
) -> None:
    _, prefect_api_url, supervisor = split_system
    running = {c.name: c for c in supervisor.children if c.running()}
    assert {"prefect-server", "prefect-services"} <= set(running)
    assert running["prefect-server"].pid != running["prefect-services"].pid
    services_log = running["prefect-services"].log_tail(200)
    assert "Starting services" in services_log, services_log
    settings = httpx.get(f"{prefect_api_url}/admin/settings", timeout=30).json()
    assert settings["server"]["events"]["messaging_broker"] == "prefect_redis.messaging"


def test_a_run_on_the_split_server_shows_task_runs_and_artifacts(
    split_system: tuple[str, str, Supervisor],
) -> None:
    api_url, prefect_api_url, _ = split_system
    with (
        httpx.Client(base_url=api_url, timeout=30) as api,
        httpx.Client(base_url=prefect_api_url, timeout=30) as prefect_api,
    ):
        created = api.post(
            "/api/task_flows",
            json={"call_name": f"split-{uuid.uuid4().hex[:8]}", "prompts": ["one", "two"]},
        )
        assert created.status_code in (200, 201), created.text
        started = api.post(f"/api/task_flows/{created.json()['id']}/run").json()
        deadline = time.monotonic() + 90
        execution: dict = {}
        while time.monotonic() < deadline:
            execution = api.get(f"/api/executions/{started['execution_id']}").json()
            if execution["status"] in ("completed", "failed", "cancelled"):
                break
            time.sleep(0.2)
        assert execution["status"] == "completed", execution

        # Task runs are recorded by the services process from events that crossed Redis.
        flow_run_id = started["flow_run_id"]
        task_runs: list[dict] = []
        artifacts: list[dict] = []
        while time.monotonic() < deadline:
            task_runs = prefect_api.post(
                "/task_runs/filter", json={"flow_runs": {"id": {"any_": [flow_run_id]}}}
            ).json()
            artifacts = prefect_api.post(
                "/artifacts/filter", json={"artifacts": {"flow_run_id": {"any_": [flow_run_id]}}}
            ).json()
            completed = [t for t in task_runs if t["state"]["type"] == "COMPLETED"]
            if len(completed) == 2 and "table" in {a["type"] for a in artifacts}:
                break
            time.sleep(0.3)
        assert sorted(t["name"] for t in task_runs) == ["prompt 1/2", "prompt 2/2"]
        assert all(t["state"]["type"] == "COMPLETED" for t in task_runs), task_runs
        by_type = {a["type"]: a for a in artifacts}
        assert "Echo: two" in str(by_type["table"]["data"])
        flow_run = prefect_api.get(f"/flow_runs/{flow_run_id}").json()
        assert flow_run["state"]["type"] == "COMPLETED"
