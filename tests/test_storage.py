"""Prompt results in rows of their own, and the reads PostgreSQL builds as JSON.

The store tests run on a database of their own (real PostgreSQL, no Prefect); the API tests
run a task flow end to end and read it back the way a client does.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import pytest_asyncio
from psycopg.conninfo import make_conninfo
from psycopg.types.json import Jsonb

from api.live.summary import ExecutionSummary
from api.schemas import ExecutionOut
from cli.sse import events
from flows.database import SQL_DIR, Pool, apply_migrations, create_pool, migration_files
from flows.execution_store import Claim, ExecutionStore
from stack.commands import api_argv
from stack.ports import free_port
from stack.system import System
from tests.conftest import wait_for_execution

UI = "http://prefect.example/ui"


@pytest.fixture
def fresh_database(system: System) -> Iterator[str]:
    """The URL of a new, empty database on the test system's server, dropped afterwards."""
    admin_url = system.admin_url
    name = f"taskflows_storage_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = make_conninfo(admin_url, dbname=name)
    try:
        yield url
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest_asyncio.fixture
async def store(fresh_database: str) -> AsyncIterator[tuple[ExecutionStore, Pool]]:
    await apply_migrations(fresh_database)
    pool = create_pool(fresh_database, max_size=2)
    await pool.open()
    try:
        yield ExecutionStore(pool), pool
    finally:
        await pool.close()


def _result(index: int, *, success: bool = True, started_at: str | None = None) -> dict[str, Any]:
    return {
        "index": index,
        "prompt": f"prompt {index}",
        "success": success,
        "response": f"answer {index}" if success else None,
        "error": None if success else "it broke",
        "started_at": started_at or f"2026-01-01T00:00:{index:02d}+00:00",
        "finished_at": f"2026-01-01T00:00:{index:02d}.5+00:00",
        "duration_ms": 500.0,
        "attempts": 1,
        "usage": None,
    }


async def _new_running(executions: ExecutionStore, prompts: int = 3) -> int:
    execution, created = await executions.create_execution(
        flow_id=1, call_name="storage", agent="a", prompts=[f"p{i}" for i in range(prompts)]
    )
    assert created
    running = await executions.start_execution(execution.id, flow_run_id=None, worker_name="w")
    assert running is not None and running.status == "running"
    return execution.id


async def _read(executions: ExecutionStore, execution_id: int) -> dict[str, Any]:
    found = await executions.execution_json(execution_id, prefect_ui_url=UI)
    assert found is not None
    body: dict[str, Any] = json.loads(found[0])
    ExecutionOut.model_validate(body)  # the documented shape
    return body


@pytest.mark.asyncio
async def test_each_result_is_a_row_and_reads_back_in_order(
    store: tuple[ExecutionStore, Pool],
) -> None:
    executions, pool = store
    execution_id = await _new_running(executions)
    for index in range(3):
        assert await executions.update_execution_progress(execution_id, index, _result(index))
    # A write repeated after a lost connection stores nothing twice.
    assert not await executions.update_execution_progress(execution_id, 2, _result(2))

    body = await _read(executions, execution_id)
    assert body["prompt_results"] == [_result(0), _result(1), _result(2)]
    assert body["current_prompt_index"] == 3
    assert await executions.list_results(execution_id) == body["prompt_results"]
    async with pool.connection() as conn:
        cursor = await conn.execute(
            "SELECT count(*) AS n FROM execution_results WHERE execution_id = %s", (execution_id,)
        )
        assert (await cursor.fetchone()) == {"n": 3}

    await executions.complete_execution(execution_id, "completed")
    # An ended execution takes no more results.
    late = _result(0, started_at="2026-01-01T01:00:00+00:00")
    assert not await executions.update_execution_progress(execution_id, 0, late)


@pytest.mark.asyncio
async def test_a_queued_execution_is_claimed_by_exactly_one_worker(
    store: tuple[ExecutionStore, Pool],
) -> None:
    executions, pool = store
    flow_run_id = uuid.uuid4()
    execution, _ = await executions.create_execution(
        flow_id=1, call_name="claimed", agent="a", prompts=["p"], flow_run_id=flow_run_id
    )

    # Ten workers at once: one wins, every other one hears that it is taken.
    claims = await asyncio.gather(
        *(
            executions.claim_queued(flow_run_id, worker_name=f"w{n}", lease_expiry_s=30)
            for n in range(10)
        )
    )
    assert sorted(claims, key=lambda c: c.value) == [Claim.CLAIMED] + [Claim.TAKEN] * 9
    winner = f"w{claims.index(Claim.CLAIMED)}"
    claimed = await executions.get_execution(execution.id)
    assert claimed is not None and claimed.status == "queued"
    assert claimed.worker_name == winner
    # Claiming again is harmless for the holder and still refused to the others.
    again = await executions.claim_queued(flow_run_id, worker_name=winner, lease_expiry_s=30)
    assert again is Claim.CLAIMED
    other = "w-other"
    assert (
        await executions.claim_queued(flow_run_id, worker_name=other, lease_expiry_s=30)
        is Claim.TAKEN
    )

    # A holder that went quiet past the lease (it died before starting the run) loses it.
    async with pool.connection() as conn:
        await conn.execute(
            "UPDATE flow_executions SET heartbeat_at = now() - interval '1 minute' WHERE id = %s",
            (execution.id,),
        )
    assert (
        await executions.claim_queued(flow_run_id, worker_name=other, lease_expiry_s=30)
        is Claim.CLAIMED
    )

    # Once started, or for a flow run without a queued execution, there is nothing to claim
    # here: the worker falls back to Prefect's own claim (proposing Pending).
    await executions.start_execution(execution.id, flow_run_id=flow_run_id, worker_name=other)
    for flow_run in (flow_run_id, uuid.uuid4()):
        answer = await executions.claim_queued(flow_run, worker_name="w0", lease_expiry_s=30)
        assert answer is Claim.NO_QUEUED_EXECUTION


@pytest.mark.asyncio
async def test_resume_and_retry_reuse_the_prompts_that_succeeded(
    store: tuple[ExecutionStore, Pool],
) -> None:
    executions, _ = store
    execution_id = await _new_running(executions, prompts=3)
    await executions.update_execution_progress(execution_id, 0, _result(0))
    await executions.update_execution_progress(execution_id, 1, _result(1, success=False))
    await executions.complete_execution(execution_id, "failed", "Prompt 2 of 3 failed")
    failed = await executions.get_execution(execution_id)
    assert failed is not None

    # A retry is a new execution that starts at the first unfinished prompt.
    retry, created = await executions.create_execution(
        flow_id=failed.flow_id,
        call_name=failed.call_name,
        agent=failed.agent,
        prompts=failed.prompts,
        trigger="retry",
        retry_of=failed.id,
    )
    assert created and retry.current_prompt_index == 1 and retry.retry_of == failed.id
    assert (await _read(executions, retry.id))["prompt_results"] == [_result(0)]

    # Prefect's "Retry" resumes the failed execution itself: the failure is dropped.
    resumed = await executions.start_execution(execution_id, flow_run_id=None, worker_name="w")
    assert resumed is not None and resumed.current_prompt_index == 1 and resumed.attempts == 2
    assert (await _read(executions, execution_id))["prompt_results"] == [_result(0)]


@pytest.mark.asyncio
async def test_summaries_carry_the_count_and_the_last_result_cut_short(
    store: tuple[ExecutionStore, Pool],
) -> None:
    executions, _ = store
    execution_id = await _new_running(executions, prompts=2)
    long = {**_result(0), "response": "x" * 5000}
    await executions.update_execution_progress(execution_id, 0, long)

    summaries = json.loads(await executions.recent_json(prefect_ui_url=UI, limit=5, results=False))
    assert len(summaries) == 1
    summary = ExecutionSummary.model_validate(summaries[0])
    assert "prompt_results" not in summaries[0] and "prompts" not in summaries[0]
    assert summary.results_count == 1 and summary.current_prompt == "p1"
    assert summary.last_result is not None
    assert summary.last_result["response"] == "x" * 2000
    assert summary.prefect_url is None  # no flow run yet

    full = json.loads(await executions.recent_json(prefect_ui_url=UI, limit=5))
    assert full[0]["prompt_results"][0]["response"] == "x" * 5000
    active = json.loads(await executions.active_json(prefect_ui_url=UI))
    assert [e["id"] for e in active] == [execution_id]


async def _migrate_up_to(database_url: str, last: str, tmp: Path) -> None:
    for path in migration_files(SQL_DIR):
        if path.name <= last:
            shutil.copy(path, tmp / path.name)
    await apply_migrations(database_url, tmp)


@pytest.mark.asyncio
async def test_the_migration_moves_stored_results_into_rows(
    fresh_database: str, tmp_path: Path
) -> None:
    await _migrate_up_to(fresh_database, "002_leases_and_attempts.sql", tmp_path)
    items = [_result(0), _result(1), {**_result(2), "response": "é" * 3000}]
    async with await psycopg.AsyncConnection.connect(fresh_database, autocommit=True) as conn:
        cursor = await conn.execute(
            """
            INSERT INTO flow_executions
                (flow_id, status, total_prompts, call_name, agent, prompts, prompt_results,
                 current_prompt_index, completed_at)
            VALUES (7, 'completed', 3, 'old', 'a', '["a","b","c"]', %s, 3, now()),
                   (7, 'failed', 3, 'old', 'a', '["a","b","c"]', '[]', 0, now())
            RETURNING id
            """,
            (Jsonb(items),),
        )
        with_results, without = [row[0] for row in await cursor.fetchall()]

    applied = await apply_migrations(fresh_database)
    assert "003_results_table.sql" in applied

    pool = create_pool(fresh_database, max_size=1)
    await pool.open()
    try:
        executions = ExecutionStore(pool)
        assert (await _read(executions, with_results))["prompt_results"] == items
        assert (await _read(executions, without))["prompt_results"] == []
    finally:
        await pool.close()


def test_the_api_reads_results_back_full_or_summarised(
    api: httpx.Client, make_task_flow: Callable[..., dict[str, Any]]
) -> None:
    flow = make_task_flow(prompts=["one", "two"])
    run = api.post(f"/api/task_flows/{flow['id']}/run").json()
    done = wait_for_execution(api, run["execution_id"])
    assert done["status"] == "completed"
    assert [r["response"] for r in done["prompt_results"]] == ["Echo: one", "Echo: two"]
    assert done["prefect_url"].endswith(f"/runs/flow-run/{done['flow_run_id']}")

    recent = api.get("/api/executions/recent", params={"limit": 50}).json()
    mine = next(e for e in recent if e["id"] == done["id"])
    assert mine == {**done, "partial_response": None}

    summaries = api.get("/api/executions/recent", params={"limit": 50, "results": "false"})
    assert summaries.status_code == 200
    assert summaries.headers["content-type"] == "application/json"
    summary = next(e for e in summaries.json() if e["id"] == done["id"])
    assert "prompt_results" not in summary
    assert summary["results_count"] == 2
    assert summary["last_result"]["response"] == "Echo: two"
    assert summary["status"] == "completed" and summary["call_name"] == flow["call_name"]


def test_a_failed_execution_can_be_retried_through_the_api(
    api: httpx.Client, make_task_flow: Callable[..., dict[str, Any]], fake_agent: Any
) -> None:
    flow = make_task_flow(prompts=["first", "second [fail=400]", "third"])
    run = api.post(f"/api/task_flows/{flow['id']}/run").json()
    failed = wait_for_execution(api, run["execution_id"])
    assert failed["status"] == "failed"
    retried = api.post(f"/api/executions/{failed['id']}/retry")
    assert retried.status_code == 200, retried.text
    new = api.get(f"/api/executions/{retried.json()['execution_id']}").json()
    assert new["retry_of"] == failed["id"]
    assert new["prompt_results"][0] == failed["prompt_results"][0]


def test_two_api_processes_serve_the_reads_and_the_stream(
    system: System, api: httpx.Client, make_task_flow: Callable[..., dict[str, Any]]
) -> None:
    """API_WORKERS=2: each process has its own pool, LISTEN and reconciler; a stream on
    either sees every change, and the reads answer the same as one process."""
    port = free_port()
    served = system.supervisor.start(
        "api-two-workers",
        api_argv(port, workers=2),
        env={**system.env, "API_PORT": str(port)},
        ready_url=f"http://127.0.0.1:{port}/healthz",
        ready_timeout=90,
    )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as two:
            flow = make_task_flow(prompts=["over two processes"])
            seen: list[dict[str, Any]] = []
            with two.stream("GET", "/api/executions/stream") as stream:
                run = two.post(f"/api/task_flows/{flow['id']}/run").json()
                deadline = time.monotonic() + 60

                def lines() -> Iterator[str]:
                    for line in stream.iter_lines():  # heartbeats every 15 s keep it moving
                        assert time.monotonic() < deadline, f"no completion; saw {seen}"
                        yield line

                for event in events(lines()):
                    if event.event == "execution" and event.json()["id"] == run["execution_id"]:
                        seen.append(event.json())
                        if event.json()["status"] == "completed":
                            break
            assert seen[-1]["results_count"] == 1
            done = wait_for_execution(two, run["execution_id"])
            assert done == api.get(f"/api/executions/{done['id']}").json()
            for _ in range(4):  # several connections, so both processes answer some
                recent = two.get("/api/executions/recent", params={"results": "false"})
                assert recent.status_code == 200
                assert recent.json()[0]["id"] >= done["id"]
    finally:
        served.stop()
