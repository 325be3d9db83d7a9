"""The optional API token, CORS, and secrets that never leak into responses or logs."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

from stack.commands import api_argv
from stack.ports import free_port
from tests.conftest import System

TOKEN = "tf-test-token-0123456789abcdef"
AGENT_KEY = "sk-agent-secret-5f1e2d3c"
DB_PASSWORD = "db-password-9a8b7c"
ALLOWED_ORIGIN = "http://allowed.example"


@pytest.fixture(scope="module")
def guarded_api(system: System) -> Iterator[tuple[httpx.Client, System, str]]:
    """A second API process with a token, CORS origins and secrets configured."""
    parts = urlsplit(system.database_url)
    # Trust auth ignores the password, but it is in the URL, where a leak would show it.
    url_with_password = urlunsplit(
        parts._replace(netloc=f"{parts.username}:{DB_PASSWORD}@{parts.hostname}:{parts.port}")
    )
    port = free_port()
    child = system.supervisor.start(
        "api-guarded",
        api_argv(port),
        env={
            **system.env,
            "DATABASE_URL": url_with_password,
            "TASKFLOWS_API_TOKEN": TOKEN,
            "TASKFLOWS_CORS_ORIGINS": ALLOWED_ORIGIN,
            "AGENT_API_KEY": AGENT_KEY,
        },
        ready_url=f"http://127.0.0.1:{port}/healthz",
        ready_timeout=60,
    )
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        yield client, system, str(child.log_path)
    child.stop()


def test_writes_need_the_token_and_reads_do_not(guarded_api):
    client, _, _ = guarded_api
    body = {"call_name": "guarded-flow", "prompts": ["hi"]}

    refused = client.post("/api/task_flows", json=body)
    assert refused.status_code == 401
    assert "API token" in refused.json()["error"]
    wrong = client.post("/api/task_flows", json=body, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401

    created = client.post(
        "/api/task_flows", json=body, headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert created.status_code == 201, created.text
    assert client.get("/api/task_flows").status_code == 200
    deleted = client.delete(
        f"/api/task_flows/{created.json()['id']}", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert deleted.status_code in (200, 204)


def test_cors_only_for_configured_origins(guarded_api):
    client, _, _ = guarded_api
    preflight = {"Access-Control-Request-Method": "POST"}
    allowed = client.options("/api/task_flows", headers={"Origin": ALLOWED_ORIGIN, **preflight})
    assert allowed.headers.get("access-control-allow-origin") == ALLOWED_ORIGIN
    other = client.options(
        "/api/task_flows", headers={"Origin": "http://evil.example", **preflight}
    )
    assert "access-control-allow-origin" not in other.headers
    simple = client.get("/api/task_flows", headers={"Origin": "http://evil.example"})
    assert "access-control-allow-origin" not in simple.headers


def test_no_secret_or_internal_detail_in_responses_or_logs(guarded_api):
    client, _, log_path = guarded_api
    auth = {"Authorization": f"Bearer {TOKEN}"}
    answers = [
        client.get("/api/executions/abc"),
        client.get("/api/executions/recent", params={"limit": -1}),
        client.post(
            "/api/task_flows",
            content=b"{not json",
            headers={**auth, "Content-Type": "application/json"},
        ),
        client.post("/api/task_flows", json={"call_name": "x", "prompts": [1]}, headers=auth),
        client.get("/api/agents"),
        client.get("/api/task_flows/999999"),
        client.post("/api/task_flows", json={"call_name": "y"}, headers={"Authorization": "x"}),
    ]
    for answer in answers:
        text = answer.text
        assert answer.headers["content-type"].startswith("application/json"), text
        for leak in (
            TOKEN,
            AGENT_KEY,
            DB_PASSWORD,
            "Traceback",
            "psycopg",
            "SELECT ",
            "/work/",
            "site-packages",
        ):
            assert leak not in text, (leak, answer.request.url, text)
    with open(log_path, encoding="utf-8", errors="replace") as log:
        logged = log.read()
    for secret in (TOKEN, AGENT_KEY, DB_PASSWORD):
        assert secret not in logged, f"{secret!r} appears in the API log"
