"""The hot reads (`api/hot_reads.py`) answer exactly as the FastAPI routes do, and every
security check still applies to them."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest
from pydantic import SecretStr

from api.security import SESSION_COOKIE, session_value
from stack.commands import api_argv
from stack.ports import free_port
from tests.conftest import System, wait_for_execution

TOKEN = "tf-hot-reads-token-0123456789"
ALLOWED_ORIGIN = "http://allowed.example"


@pytest.fixture(scope="module")
def execution_id(api: httpx.Client) -> int:
    """One completed execution with two results."""
    body = {"call_name": f"hot-reads-{uuid.uuid4().hex[:10]}", "prompts": ["one", "two"]}
    flow = api.post("/api/task_flows", json=body)
    assert flow.status_code == 201, flow.text
    run = api.post(f"/api/task_flows/{flow.json()['id']}/run").json()
    done = wait_for_execution(api, run["execution_id"])
    assert done["status"] == "completed"
    return int(done["id"])


def _hot_and_routed(path: str) -> tuple[str, str]:
    """`path` as the hot reads answer it, and with a parameter no route declares, which
    they leave to FastAPI (it ignores unknown parameters)."""
    return path, path + ("&" if "?" in path else "?") + "unknown=1"


@pytest.mark.parametrize(
    "path",
    [
        "/api/executions/active",
        "/api/executions/recent",
        "/api/executions/recent?limit=5",
        "/api/executions/recent?limit=5&results=false",
        "/api/executions/recent?results=true&limit=500",
        "/api/executions/{id}",
        "/api/executions/recent?before_id={id}&limit=3",
        "/api/executions/recent?before_id={next}&limit=1&results=0",
        "/api/executions/999999999999",
    ],
)
def test_the_hot_reads_answer_as_the_routes_do(
    api: httpx.Client, execution_id: int, path: str
) -> None:
    hot, routed = _hot_and_routed(path.format(id=execution_id, next=execution_id + 1))
    fast, slow = api.get(hot), api.get(routed)
    assert fast.status_code == slow.status_code
    assert fast.headers["content-type"] == slow.headers["content-type"]
    assert fast.json() == slow.json()
    if "{id}" in path and "before_id" not in path:
        assert fast.json()["id"] == execution_id
        assert [r["response"] for r in fast.json()["prompt_results"]] == ["Echo: one", "Echo: two"]
    if "{next}" in path:
        assert [e["id"] for e in fast.json()] == [execution_id]
    if path.endswith("999999999999"):
        assert fast.status_code == 404
        assert fast.json()["error"] == "Execution 999999999999 does not exist."


@pytest.mark.parametrize(
    "path",
    [
        "/api/executions/recent?limit=0",
        "/api/executions/recent?limit=501",
        "/api/executions/recent?results=maybe",
        "/api/executions/recent?before_id=",
        "/api/executions/0",
        "/api/executions/9223372036854775808",
    ],
)
def test_what_the_routes_refuse_is_still_refused_in_sentences(api: httpx.Client, path: str) -> None:
    answer = api.get(path)
    assert answer.status_code == 422, answer.text
    body = answer.json()
    assert body["ok"] is False and body["error"] and "Traceback" not in answer.text


@pytest.fixture(scope="module")
def guarded(system: System) -> Iterator[httpx.Client]:
    """An API process with a token and one CORS origin."""
    port = free_port()
    child = system.supervisor.start(
        "api-hot-reads",
        api_argv(port),
        env={**system.env, "TASKFLOWS_API_TOKEN": TOKEN, "TASKFLOWS_CORS_ORIGINS": ALLOWED_ORIGIN},
        ready_url=f"http://127.0.0.1:{port}/healthz",
        ready_timeout=60,
    )
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        yield client
    child.stop()


def test_the_hot_reads_need_the_token_host_and_origin_checks(
    guarded: httpx.Client, execution_id: int
) -> None:
    paths = [
        "/api/executions/active",
        "/api/executions/recent?limit=2&results=false",
        f"/api/executions/{execution_id}",
    ]
    for path in paths:
        refused = guarded.get(path)
        assert refused.status_code == 401, (path, refused.text)
        assert "token" in refused.json()["error"]
        assert refused.headers["www-authenticate"] == "Bearer"
        wrong = guarded.get(path, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        # HTTPBearer takes the scheme in any case.
        assert guarded.get(path, headers={"Authorization": f"bearer {TOKEN}"}).status_code == 200
        # The page's session cookie opens reads.
        cookie = {"Cookie": f"{SESSION_COOKIE}={session_value(SecretStr(TOKEN))}"}
        assert guarded.get(path, headers=cookie).status_code == 200

        auth = {"Authorization": f"Bearer {TOKEN}"}
        foreign = guarded.get(path, headers={**auth, "Host": "evil.example"})
        assert foreign.status_code == 400 and "evil.example" in foreign.json()["error"]
        allowed = guarded.get(path, headers={**auth, "Origin": ALLOWED_ORIGIN})
        assert allowed.status_code == 200
        assert allowed.headers.get("access-control-allow-origin") == ALLOWED_ORIGIN
        other = guarded.get(path, headers={**auth, "Origin": "http://evil.example"})
        assert "access-control-allow-origin" not in other.headers
