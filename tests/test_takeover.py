"""Taking over a database made by the old system's install step, in place.

The old tables are built here from the facts in the project's notes on the old schema
(`task_flows`, `memories`, `flow_executions` with its cascading foreign key, and
`scheduled_prompts`), with the NULLs the old schema allows and, in one variant, the TEXT
`prompt_results` of the old server's own schema file. Then the migrations run, an API
process serves that database, and every row must read back.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest
from psycopg.conninfo import make_conninfo
from psycopg.rows import dict_row

from flows.database import apply_migrations
from stack.commands import api_argv
from stack.ports import free_port
from stack.system import System


def _old_schema(results_type: str) -> str:
    default = "DEFAULT '[]'" if results_type == "JSONB" else ""
    return f"""
    CREATE TABLE task_flows (
        id SERIAL PRIMARY KEY,
        call_name TEXT UNIQUE NOT NULL,
        prompts JSONB NOT NULL DEFAULT '[]',
        agent VARCHAR(255) NOT NULL DEFAULT 'simple_agent',
        created_at TIMESTAMPTZ DEFAULT CURRENT_TIMESTAMP,
        updated_at TIMESTAMPTZ DEFAULT CURRENT_TIMESTAMP
    );
    CREATE TABLE memories (
        id SERIAL PRIMARY KEY,
        content TEXT NOT NULL,
        created_at TIMESTAMPTZ DEFAULT CURRENT_TIMESTAMP,
        updated_at TIMESTAMPTZ DEFAULT CURRENT_TIMESTAMP
    );
    CREATE TABLE flow_executions (
        id SERIAL PRIMARY KEY,
        flow_id INTEGER NOT NULL REFERENCES task_flows (id) ON DELETE CASCADE,
        status VARCHAR(50) NOT NULL DEFAULT 'running',
        current_prompt_index INTEGER DEFAULT 0,
        total_prompts INTEGER NOT NULL DEFAULT 0,
        started_at TIMESTAMPTZ DEFAULT CURRENT_TIMESTAMP,
        completed_at TIMESTAMPTZ,
        error TEXT,
        prompt_results {results_type} {default}
    );
    CREATE TABLE scheduled_prompts (
        id SERIAL PRIMARY KEY,
        time_of_day TEXT NOT NULL,
        days_of_week JSONB NOT NULL DEFAULT '[]',
        prompt TEXT NOT NULL,
        agent VARCHAR(255) NOT NULL DEFAULT 'simple_agent',
        enabled BOOLEAN NOT NULL DEFAULT true,
        created_at TIMESTAMPTZ DEFAULT CURRENT_TIMESTAMP,
        updated_at TIMESTAMPTZ DEFAULT CURRENT_TIMESTAMP
    );
    """


OLD_RESULTS = [
    {"success": True, "prompt": "Plan the day", "response": "Coffee first.", "error": None},
    {"success": False, "prompt": "Book a table", "response": None, "error": "agent said no"},
]


def _fill(conn: psycopg.Connection[Any], results_type: str) -> dict[str, int]:
    """The rows an old install would hold; returns the ids the checks need."""

    def results(value: object) -> object:
        return None if value is None else json.dumps(value)

    cast = "::jsonb" if results_type == "JSONB" else ""
    ids: dict[str, int] = {}

    def one(query: str, params: tuple[Any, ...] = ()) -> int:
        row = conn.execute(query, params).fetchone()
        assert row is not None
        return int(row[0])

    ids["flow"] = one(
        "INSERT INTO task_flows (call_name, prompts) VALUES ('morning', %s) RETURNING id",
        (json.dumps(["Plan the day", "Book a table"]),),
    )
    ids["empty_flow"] = one(
        "INSERT INTO task_flows (call_name, agent, created_at, updated_at)"
        " VALUES ('nothing yet', 'other_agent', NULL, NULL) RETURNING id"
    )
    ids["odd_flow"] = one(
        "INSERT INTO task_flows (call_name, prompts) VALUES ('odd', %s) RETURNING id",
        (json.dumps(["fine", 42]),),
    )
    ids["memory"] = one("INSERT INTO memories (content) VALUES ('likes tea') RETURNING id")
    ids["bare_memory"] = one(
        "INSERT INTO memories (content, created_at, updated_at)"
        " VALUES ('no dates', NULL, NULL) RETURNING id"
    )
    ids["completed"] = one(
        "INSERT INTO flow_executions (flow_id, status, current_prompt_index, total_prompts,"
        " completed_at, prompt_results)"
        f" VALUES (%s, 'completed', 2, 2, now(), %s{cast}) RETURNING id",
        (ids["flow"], results([*OLD_RESULTS[:1], {**OLD_RESULTS[0], "prompt": "Book a table"}])),
    )
    ids["failed"] = one(
        "INSERT INTO flow_executions (flow_id, status, current_prompt_index, total_prompts,"
        " completed_at, error, prompt_results)"
        f" VALUES (%s, 'failed', 1, 2, now(), 'agent said no', %s{cast}) RETURNING id",
        (ids["flow"], results(OLD_RESULTS)),
    )
    ids["running"] = one(
        "INSERT INTO flow_executions (flow_id, status, total_prompts, prompt_results)"
        f" VALUES (%s, 'running', 2, %s{cast}) RETURNING id",
        (ids["flow"], results(OLD_RESULTS[:1])),
    )
    ids["nulls"] = one(
        "INSERT INTO flow_executions (flow_id, status, current_prompt_index, total_prompts,"
        " started_at, prompt_results)"
        " VALUES (%s, 'completed', NULL, 0, NULL, NULL) RETURNING id",
        (ids["empty_flow"],),
    )
    if results_type == "TEXT":
        ids["garbled"] = one(
            "INSERT INTO flow_executions (flow_id, status, total_prompts, completed_at,"
            " prompt_results) VALUES (%s, 'failed', 2, now(), 'not json at all') RETURNING id",
            (ids["flow"],),
        )
    conn.execute(
        "INSERT INTO scheduled_prompts (time_of_day, days_of_week, prompt)"
        " VALUES ('08:00', '[1, 2, 3]', 'Good morning')"
    )
    return ids


@pytest.fixture(params=["JSONB", "TEXT"])
def old_database(
    request: pytest.FixtureRequest, system: System
) -> Iterator[tuple[str, dict[str, int], str]]:
    admin_url = system.admin_url
    name = f"taskflows_old_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = make_conninfo(admin_url, dbname=name)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(_old_schema(request.param))
            ids = _fill(conn, request.param)
        yield url, ids, request.param
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _rows(url: str, query: str) -> list[dict[str, Any]]:
    with psycopg.connect(url, row_factory=dict_row) as conn:
        return conn.execute(query).fetchall()


def test_an_old_database_is_adopted_in_place_and_served(
    old_database: tuple[str, dict[str, int], str], system: System
) -> None:
    url, ids, results_type = old_database
    # The old columns and rows stay as they were (010 adds timezone and deployment_id).
    old_schedules = (
        "SELECT id, time_of_day, days_of_week, prompt, agent, enabled, created_at, updated_at"
        " FROM scheduled_prompts ORDER BY id"
    )
    schedules_before = _rows(url, old_schedules)

    applied = asyncio.run(apply_migrations(url))
    assert applied[0] == "000_adopt_old_install.sql" and "003_results_table.sql" in applied
    assert asyncio.run(apply_migrations(url)) == []  # once only

    assert _rows(url, old_schedules) == schedules_before
    foreign_keys = _rows(
        url,
        "SELECT conname FROM pg_constraint WHERE contype = 'f'"
        " AND confrelid = 'task_flows'::regclass",
    )
    assert foreign_keys == []

    port = free_port()
    api_process = system.supervisor.start(
        f"api-takeover-{results_type.lower()}",
        api_argv(port),
        env={**system.env, "DATABASE_URL": url, "API_PORT": str(port)},
        ready_url=f"http://127.0.0.1:{port}/healthz",
        ready_timeout=90,
    )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as api:
            _check_served(api, ids, results_type)
    finally:
        api_process.stop()


def _check_served(api: httpx.Client, ids: dict[str, int], results_type: str) -> None:
    flows = {f["call_name"]: f for f in api.get("/api/task_flows").json()}
    assert set(flows) == {"morning", "nothing yet", "odd"}
    assert flows["morning"]["prompts"] == ["Plan the day", "Book a table"]
    assert flows["morning"]["agent"] == "simple_agent" and flows["morning"]["version"] == 1
    assert flows["nothing yet"]["prompts"] == [] and flows["nothing yet"]["created_at"]
    assert flows["odd"]["prompts"] == ["fine", "42"]

    memories = {m["id"]: m for m in api.get("/api/memories").json()}
    assert memories[ids["memory"]]["content"] == "likes tea"
    assert memories[ids["bare_memory"]]["content"] == "no dates"
    assert memories[ids["bare_memory"]]["created_at"]

    def execution(key: str) -> dict[str, Any]:
        response = api.get(f"/api/executions/{ids[key]}")
        assert response.status_code == 200, response.text
        return dict(response.json())

    completed = execution("completed")
    assert completed["status"] == "completed" and completed["call_name"] == "morning"
    assert completed["current_prompt_index"] == 2 and completed["total_prompts"] == 2
    assert [r["response"] for r in completed["prompt_results"]] == ["Coffee first."] * 2

    failed = execution("failed")
    assert failed["status"] == "failed" and failed["error"] == "agent said no"
    # Each old item, plus the prompt it answers (its position), as taskflows' own items have.
    assert failed["prompt_results"] == [{**r, "index": i} for i, r in enumerate(OLD_RESULTS)]
    assert failed["prompts"] == ["Plan the day", "Book a table"]

    running = execution("running")
    assert running["status"] == "failed" and running["completed_at"]
    assert "took over this database" in running["error"]
    assert running["prompt_results"] == [{**OLD_RESULTS[0], "index": 0}]

    nulls = execution("nulls")
    assert nulls["status"] == "completed" and nulls["current_prompt_index"] == 0
    assert nulls["total_prompts"] == 0 and nulls["prompt_results"] == []
    assert nulls["started_at"] and nulls["agent"] == "other_agent"

    if results_type == "TEXT":
        garbled = execution("garbled")
        assert garbled["prompt_results"][0]["response"] == "not json at all"
        assert "not JSON" in garbled["prompt_results"][0]["error"]

    recent = api.get("/api/executions/recent", params={"limit": 50}).json()
    assert {e["id"] for e in recent} == {ids[k] for k in ids if k in _EXECUTION_KEYS}
    assert api.get("/api/executions/active").json() == []
    summaries = api.get("/api/executions/recent", params={"results": "false"}).json()
    assert {e["id"]: e["results_count"] for e in summaries}[ids["failed"]] == 2

    # A task flow the old system let be empty cannot run: a sentence says why.
    refused = api.post(f"/api/task_flows/{ids['empty_flow']}/run")
    assert refused.status_code == 409 and "has no prompts" in refused.json()["error"]

    # The history of a deleted task flow stays (the cascading foreign key is gone).
    assert api.delete(f"/api/task_flows/{ids['flow']}").status_code == 200
    assert execution("failed")["prompt_results"] == failed["prompt_results"]


_EXECUTION_KEYS = {"completed", "failed", "running", "nulls", "garbled"}


def test_db_variables_without_a_host_mean_the_local_server(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from flows.settings import Settings

    for name in ("DATABASE_URL", "DB_HOST", "DB_PORT", "DB_NAME", "DB_USER", "DB_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    assert not Settings().database_configured  # nothing named: `make up` embeds one

    monkeypatch.setenv("DB_NAME", "automation")
    monkeypatch.setenv("DB_PASSWORD", "s3cret/")
    settings = Settings()
    assert settings.database_configured
    # An empty host is libpq's default: the local server's socket.
    assert settings.resolved_database_url() == "postgresql://postgres:s3cret%2F@:5432/automation"

    monkeypatch.setenv("DB_HOST", "db.example")
    monkeypatch.setenv("DB_USER", "luna")
    assert Settings().resolved_database_url() == (
        "postgresql://luna:s3cret%2F@db.example:5432/automation"
    )
    monkeypatch.setenv("DB_NAME", " ")
    monkeypatch.delenv("DB_HOST")
    monkeypatch.delenv("DB_USER")
    monkeypatch.delenv("DB_PASSWORD")
    assert not Settings().database_configured  # blank means unset
