"""Scheduled prompts run on Prefect: they fire in their time zone, their runs are
executions like any other, and rows the old system left behind get live schedules."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit
from zoneinfo import ZoneInfo

import httpx
import psycopg
import pytest
from typer.testing import CliRunner

from cli import app as cli_app
from stack.demo_agent import DemoAgent
from tests.conftest import System, wait_for_execution


@pytest.mark.slow
def test_a_scheduled_prompt_fires_in_its_time_zone_and_is_an_execution(
    api: httpx.Client, prefect_api: httpx.Client, fake_agent: DemoAgent
):
    # The next whole minute in Kolkata (UTC+05:30, so a wrong zone would be 5.5 h off) at
    # least 25 s away, on that day of the week only. Prefect's scheduler plans the runs of
    # an updated deployment within about 5 s, so 25 s leaves room on a loaded machine.
    zone = ZoneInfo("Asia/Kolkata")
    due = (datetime.now(zone) + timedelta(seconds=25 + 60)).replace(second=0, microsecond=0)
    days = [False] * 7
    days[(due.weekday() + 1) % 7] = True  # Sunday first
    created = api.post(
        "/api/scheduled_prompts",
        json={
            "time_of_day": due.strftime("%H:%M"),
            "days_of_week": days,
            "prompt": "What is on today?",
            "agent": "demo-echo",
            "enabled": True,
            "timezone": "Asia/Kolkata",
        },
    ).json()
    try:
        deadline = time.monotonic() + 200
        execution = None
        while time.monotonic() < deadline and execution is None:
            recent = api.get("/api/executions/recent", params={"limit": 50}).json()
            execution = next(
                (e for e in recent if e.get("scheduled_prompt_id") == created["id"]), None
            )
            time.sleep(0.5)
        assert execution is not None, f"nothing ran within 200 s (due {due.isoformat()})"
    finally:
        api.delete(f"/api/scheduled_prompts/{created['id']}")

    done = wait_for_execution(api, execution["id"])
    assert done["status"] == "completed", done
    assert done["trigger"] == "schedule" and done["flow_id"] is None
    assert done["call_name"] == f"scheduled prompt {created['id']}"
    assert done["agent"] == "demo-echo" and done["prompts"] == ["What is on today?"]
    assert [r["response"] for r in done["prompt_results"]] == ["Echo: What is on today?"]
    assert done["current_prompt_index"] == done["total_prompts"] == 1
    assert fake_agent.requests[-1].model == "demo-echo"

    # The same run in Prefect: the scheduled prompt's deployment, at the time asked for.
    flow_run = prefect_api.get(f"/flow_runs/{done['flow_run_id']}").json()
    assert flow_run["auto_scheduled"] is True
    assert flow_run["deployment_id"] == created["deployment_id"]
    assert flow_run["parameters"] == {"scheduled_prompt_id": created["id"]}
    assert datetime.fromisoformat(flow_run["expected_start_time"]) == due
    assert flow_run["name"] == f"scheduled prompt {created['id']} #{done['id']}"


def test_rows_left_by_the_old_system_get_live_schedules_when_a_worker_starts(
    system: System, api: httpx.Client, prefect_api: httpx.Client, db: psycopg.Connection[Any]
):
    # As the old system wrote them: straight into the table, no time zone, no deployment.
    row = db.execute(
        """
        INSERT INTO scheduled_prompts (time_of_day, days_of_week, prompt, agent, enabled)
        VALUES ('06:45', '[false, true, false, false, false, false, false]',
                'Old Monday prompt', 'simple_agent', true)
        RETURNING id
        """
    ).fetchone()
    assert row is not None
    prompt_id = row["id"]
    worker = system.start_worker()
    try:
        deadline = time.monotonic() + 90
        deployment_id = None
        while time.monotonic() < deadline and deployment_id is None:
            found = db.execute(
                "SELECT deployment_id FROM scheduled_prompts WHERE id = %s", (prompt_id,)
            ).fetchone()
            deployment_id = found["deployment_id"] if found else None
            time.sleep(0.2)
        assert deployment_id is not None, worker.log_tail()
    finally:
        worker.stop()

    deployment = prefect_api.get(f"/deployments/{deployment_id}").json()
    (schedule,) = deployment["schedules"]
    assert schedule["schedule"]["cron"] == "45 6 * * 1"
    assert schedule["schedule"]["timezone"] == "UTC"
    assert schedule["active"] is True
    shown = api.get(f"/api/scheduled_prompts/{prompt_id}").json()
    assert shown["cron"] == "45 6 * * 1" and shown["timezone"] == "UTC"
    assert shown["prefect_url"].endswith(f"/deployments/deployment/{deployment_id}")
    assert api.delete(f"/api/scheduled_prompts/{prompt_id}").status_code == 200
    assert prefect_api.get(f"/deployments/{deployment_id}").status_code == 404


def test_the_migration_keeps_an_old_table_with_text_days(system: System):
    """The old system's own schema.sql stored days_of_week as TEXT: its rows survive."""
    from flows.database import apply_migrations

    admin_url = system.admin_url
    name = f"taskflows_oldsched_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = urlunsplit(urlsplit(admin_url)._replace(path="/" + name))
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                """
                CREATE TABLE scheduled_prompts (
                  id SERIAL PRIMARY KEY,
                  time_of_day VARCHAR(10) NOT NULL,
                  days_of_week TEXT NOT NULL,
                  prompt TEXT NOT NULL,
                  agent VARCHAR(100) NOT NULL DEFAULT 'simple_agent',
                  enabled BOOLEAN NOT NULL DEFAULT TRUE,
                  created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
                  updated_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
                );
                INSERT INTO scheduled_prompts (time_of_day, days_of_week, prompt)
                VALUES ('07:30', '[true,false,false,false,false,false,true]', 'Weekend');
                """
            )
        applied = asyncio.run(apply_migrations(url))
        assert "010_scheduled_prompts.sql" in applied
        with psycopg.connect(url) as conn:
            found = conn.execute(
                "SELECT time_of_day, days_of_week, prompt, agent, enabled, timezone "
                "FROM scheduled_prompts"
            ).fetchall()
        assert found == [
            (
                "07:30",
                [True, False, False, False, False, False, True],
                "Weekend",
                "simple_agent",
                True,
                "UTC",
            )
        ]
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_cli_lists_agent_names_with_the_default(system: System):
    env = {"TASKFLOWS_API_URL": system.api_url, "TASKFLOWS_API_TOKEN": ""}
    result = CliRunner().invoke(cli_app, ["agents"], env=env)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["default  (default)", "demo-echo"]


def test_retrying_a_scheduled_prompts_run_says_where_to_retry_it(
    api: httpx.Client, db: psycopg.Connection[Any]
):
    row = db.execute(
        """
        INSERT INTO flow_executions (flow_id, status, total_prompts, call_name, agent, prompts,
                                     trigger, error, scheduled_prompt_id)
        VALUES (NULL, 'failed', 1, 'scheduled prompt 99', 'default', '["Hello"]', 'schedule',
                'Prompt 1 of 1 failed: boom', 99)
        RETURNING id
        """
    ).fetchone()
    assert row is not None
    response = api.post(f"/api/executions/{row['id']}/retry")
    assert response.status_code == 409
    assert "ran a scheduled prompt" in response.json()["error"]
    shown = api.get(f"/api/executions/{row['id']}").json()
    assert shown["flow_id"] is None and shown["scheduled_prompt_id"] == 99
