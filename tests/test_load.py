"""150 concurrent runs complete, none stuck, and PostgreSQL's connections are never
exhausted (the old design left 67 of 150 runs `running` forever)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import psycopg
import pytest

from stack.demo_agent import DemoAgent
from tests.conftest import FINAL, System

pytestmark = pytest.mark.slow

RUNS = 150


def _one(conn: psycopg.Connection, query: str, params: tuple = ()) -> Any:
    row = conn.execute(query, params).fetchone()
    assert row is not None
    return row[0]


def test_150_concurrent_runs_complete_with_bounded_connections(
    system: System, api: httpx.Client, fake_agent: DemoAgent, make_task_flow
):
    flow = make_task_flow(prompts=["load one [delay=0.2]", "load two [delay=0.2]"])
    with psycopg.connect(system.database_url, autocommit=True) as conn:
        max_connections = int(_one(conn, "SHOW max_connections"))
        app_db = str(_one(conn, "SELECT current_database()"))
    # Ours only: the taskflows database and the Prefect server's (same suffix).
    databases = [app_db, app_db.replace("taskflows_test_", "prefect_test_")]

    peak = 0
    sampling = threading.Event()

    def sample_connections() -> None:
        nonlocal peak
        with psycopg.connect(system.database_url, autocommit=True) as conn:
            while not sampling.is_set():
                count = _one(
                    conn,
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = ANY(%s)",
                    (databases,),
                )
                peak = max(peak, int(count))
                time.sleep(0.2)

    sampler = threading.Thread(target=sample_connections, daemon=True)
    sampler.start()
    started_at = time.monotonic()
    try:
        with ThreadPoolExecutor(10) as pool:
            responses = list(
                pool.map(lambda _: api.post(f"/api/task_flows/{flow['id']}/run"), range(RUNS))
            )
        assert all(r.status_code == 200 for r in responses), [r.text for r in responses[:3]]
        ids = [r.json()["execution_id"] for r in responses]

        deadline = time.monotonic() + 600
        statuses: dict[int, str] = {}
        while time.monotonic() < deadline:
            recent = api.get("/api/executions/recent", params={"limit": 500}).json()
            statuses = {e["id"]: e["status"] for e in recent if e["id"] in set(ids)}
            if len(statuses) == RUNS and all(s in FINAL for s in statuses.values()):
                break
            time.sleep(1)
        took = time.monotonic() - started_at
    finally:
        sampling.set()
        sampler.join(timeout=5)

    stuck = [i for i in ids if statuses.get(i) not in FINAL]
    print(
        f"{RUNS} runs finished in {took:.1f} s ({RUNS / took:.1f} runs/s); "
        f"peak connections {peak} of {max_connections}"
    )
    assert not stuck, f"{len(stuck)} runs stuck"
    assert all(statuses[i] == "completed" for i in ids)
    assert peak < max_connections - 10
