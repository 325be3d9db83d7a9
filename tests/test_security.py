"""The optional API token, Host and Origin checks, CORS, and secrets that never leak into
responses or logs."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Generator, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from typing import cast
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
from starlette.responses import PlainTextResponse
from starlette.types import Message, Receive, Scope, Send

from api.host_origin import HostOriginGuard, served_host_names
from api.security import SESSION_COOKIE
from api.stream_limits import StreamLimiter
from flows.agent_client import AgentClient
from flows.errors import AgentError, UnsafeExposure
from flows.settings import check_exposure
from stack.commands import api_argv
from stack.demo_agent import MAX_ANSWER_CHARS, REQUEST_LOG_SIZE, DemoAgent
from stack.demo_agent import create_app as create_demo_agent
from stack.ports import free_port
from tests.conftest import System

TOKEN = "tf-test-token-0123456789abcdef"
AGENT_KEY = "sk-agent-secret-5f1e2d3c"
DB_PASSWORD = "db-password-9a8b7c"
ALLOWED_ORIGIN = "http://allowed.example"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MAX_STREAMS = 2


@dataclass
class Guarded:
    client: httpx.Client
    system: System
    log_path: str
    db_password: str


@pytest.fixture(scope="module")
def guarded_api(system: System) -> Iterator[Guarded]:
    """A second API process with a token, CORS origins and secrets configured."""
    parts = urlsplit(system.database_url)
    # The embedded PostgreSQL has a password: keep it. A trust-auth server ignores the
    # one put in here, but it is in the URL, where a leak would show it.
    db_password = parts.password or DB_PASSWORD
    url_with_password = urlunsplit(
        parts._replace(netloc=f"{parts.username}:{db_password}@{parts.hostname}:{parts.port}")
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
            "MAX_STREAMS": str(MAX_STREAMS),
        },
        ready_url=f"http://127.0.0.1:{port}/healthz",
        ready_timeout=60,
    )
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        yield Guarded(client, system, str(child.log_path), db_password)
    child.stop()


def test_with_a_token_every_endpoint_needs_it(guarded_api: Guarded) -> None:
    client = guarded_api.client
    body = {"call_name": "guarded-flow", "prompts": ["hi"]}

    refused = client.post("/api/task_flows", json=body)
    assert refused.status_code == 401
    assert "token" in refused.json()["error"]
    wrong = client.post("/api/task_flows", json=body, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    # Reads too: prompts, answers and memories are not for anyone who reaches the port.
    for path in (
        "/api/task_flows",
        "/api/memories",
        "/api/executions/recent",
        "/api/executions/active",
        "/api/executions/refresh",
        "/api/executions/stream",
        "/api/agents",
    ):
        answer = client.get(path)
        assert answer.status_code == 401, (path, answer.status_code, answer.text[:200])
        assert "token" in answer.json()["error"]

    created = client.post("/api/task_flows", json=body, headers=AUTH)
    assert created.status_code == 201, created.text
    listed = client.get("/api/task_flows", headers=AUTH)
    assert listed.status_code == 200
    assert "guarded-flow" in [flow["call_name"] for flow in listed.json()]
    deleted = client.delete(f"/api/task_flows/{created.json()['id']}", headers=AUTH)
    assert deleted.status_code in (200, 204)


def test_the_health_check_and_the_page_shell_need_no_token(guarded_api: Guarded) -> None:
    client = guarded_api.client
    health = client.get("/healthz")
    assert health.status_code in (200, 503) and "database" in health.json()
    page = client.get("/")
    assert page.status_code == 200 and "<html" in page.text.lower()
    assert client.get("/static/js/main.js").status_code == 200


def test_the_session_cookie_opens_the_stream_but_never_writes(guarded_api: Guarded) -> None:
    client = guarded_api.client
    assert client.post("/api/session").status_code == 401
    opened = client.post("/api/session", headers=AUTH)
    assert opened.status_code == 204
    set_cookie = opened.headers["set-cookie"].lower()
    assert "httponly" in set_cookie and "samesite=strict" in set_cookie
    cookie = opened.cookies[SESSION_COOKIE]
    assert TOKEN not in cookie  # a value derived from the token, not the token
    with httpx.Client(base_url=client.base_url, timeout=10) as browser:
        browser.cookies.set(SESSION_COOKIE, cookie)
        with browser.stream("GET", "/api/executions/stream") as stream:
            assert stream.status_code == 200
            assert stream.iter_bytes().__next__().startswith(b"retry:")
        assert browser.get("/api/task_flows").status_code == 200
        write = browser.post("/api/task_flows", json={"call_name": "by-cookie", "prompts": ["x"]})
        assert write.status_code == 401
        browser.cookies.set(SESSION_COOKIE, "0" * len(cookie))
        assert browser.get("/api/task_flows").status_code == 401


def test_cors_only_for_configured_origins(guarded_api: Guarded) -> None:
    client = guarded_api.client
    preflight = {"Access-Control-Request-Method": "POST"}
    allowed = client.options("/api/task_flows", headers={"Origin": ALLOWED_ORIGIN, **preflight})
    assert allowed.headers.get("access-control-allow-origin") == ALLOWED_ORIGIN
    other = client.options(
        "/api/task_flows", headers={"Origin": "http://evil.example", **preflight}
    )
    assert "access-control-allow-origin" not in other.headers
    simple = client.get("/api/task_flows", headers={"Origin": "http://evil.example", **AUTH})
    assert "access-control-allow-origin" not in simple.headers
    # A configured origin may write (with the token).
    body = {"call_name": "from-allowed-origin", "prompts": ["hi"]}
    created = client.post("/api/task_flows", json=body, headers={"Origin": ALLOWED_ORIGIN, **AUTH})
    assert created.status_code == 201, created.text
    client.delete(f"/api/task_flows/{created.json()['id']}", headers=AUTH)


def test_a_cross_site_write_is_refused(api: httpx.Client, make_task_flow, db) -> None:
    """Without a token (the default), a bodiless POST from any web page would start runs."""
    flow = make_task_flow()
    before = db.execute(
        "SELECT count(*) AS n FROM flow_executions WHERE flow_id = %s", [flow["id"]]
    ).fetchone()["n"]
    for origin in ("http://evil.example", "null", "http://127.0.0.1:1"):
        refused = api.post(f"/api/task_flows/{flow['id']}/run", headers={"Origin": origin})
        assert refused.status_code == 403, (origin, refused.text)
        assert "TASKFLOWS_CORS_ORIGINS" in refused.json()["error"]
    after = db.execute(
        "SELECT count(*) AS n FROM flow_executions WHERE flow_id = %s", [flow["id"]]
    ).fetchone()["n"]
    assert after == before  # nothing was started
    # The page the API serves posts with its own origin; clients without Origin are fine.
    renamed = api.put(
        f"/api/task_flows/{flow['id']}",
        json={"call_name": flow["call_name"] + "-x", "prompts": ["Say hello"]},
        headers={"Origin": str(api.base_url).rstrip("/")},
    )
    assert renamed.status_code == 200, renamed.text
    # Reads from elsewhere are answered, but without CORS headers a browser hides them.
    assert api.get("/api/task_flows", headers={"Origin": "http://evil.example"}).status_code == 200


def test_a_foreign_host_name_is_refused(api: httpx.Client, guarded_api: Guarded) -> None:
    """DNS rebinding: evil.example resolving to 127.0.0.1 reaches the API with its own name."""
    port = api.base_url.port
    for client, headers in ((api, {}), (guarded_api.client, AUTH)):
        refused = client.get("/api/task_flows", headers={"Host": "evil.example", **headers})
        assert refused.status_code == 400
        assert "TASKFLOWS_ALLOWED_HOSTS" in refused.json()["error"]
        assert client.get("/healthz", headers={"Host": "evil.example"}).status_code == 400
    for name in (f"localhost:{port}", f"127.0.0.1:{port}", "localhost", f"[::1]:{port}"):
        answer = api.get("/api/task_flows", headers={"Host": name})
        assert answer.status_code == 200, (name, answer.text)


@pytest.mark.parametrize(
    ("api_host", "extra", "expected"),
    [
        ("127.0.0.1", [], {"localhost", "127.0.0.1", "::1"}),
        ("tasks.internal", ["Proxy.Example"], {"tasks.internal", "proxy.example", "localhost"}),
        ("0.0.0.0", [], None),  # reached by unknown names: the token protects it
        ("127.0.0.1", ["*"], None),
    ],
)
def test_the_host_names_served(api_host: str, extra: list[str], expected: set[str] | None) -> None:
    names = served_host_names(api_host, extra)
    if expected is None:
        assert names is None
    else:
        assert names is not None and expected <= names


def test_listening_beyond_loopback_without_a_token_is_refused_at_start(
    system: System,
) -> None:
    env = {**os.environ, **system.env, "API_HOST": "0.0.0.0", "TASKFLOWS_API_TOKEN": ""}
    refused = subprocess.run(
        [sys.executable, "-c", "import api.app"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert refused.returncode != 0
    assert "API_HOST=0.0.0.0 makes the API reachable from other machines" in refused.stderr
    assert "TASKFLOWS_API_TOKEN" in refused.stderr

    for allowed in ({"TASKFLOWS_API_TOKEN": TOKEN}, {"TASKFLOWS_ALLOW_NO_TOKEN": "true"}):
        started = subprocess.run(
            [sys.executable, "-c", "import api.app"],
            env={**env, **allowed},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert started.returncode == 0, started.stderr[-2000:]
    # Loopback needs no token.
    check_exposure("localhost", None, allow_no_token=False)
    check_exposure("::1", None, allow_no_token=False)
    with pytest.raises(UnsafeExposure):
        check_exposure("192.168.1.10", None, allow_no_token=False)


def test_no_secret_or_internal_detail_in_responses_or_logs(guarded_api: Guarded) -> None:
    client, log_path = guarded_api.client, guarded_api.log_path
    auth = AUTH
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
            guarded_api.db_password,
            "Traceback",
            "psycopg",
            "SELECT ",
            "/work/",
            "site-packages",
        ):
            assert leak not in text, (leak, answer.request.url, text)
    with open(log_path, encoding="utf-8", errors="replace") as log:
        logged = log.read()
    for secret in (TOKEN, AGENT_KEY, guarded_api.db_password):
        assert secret not in logged, f"{secret!r} appears in the API log"


def _open_stream(client: httpx.Client, stack: ExitStack) -> httpx.Response:
    response = stack.enter_context(client.stream("GET", "/api/executions/stream", headers=AUTH))
    if response.status_code == 200:
        # Keep the reader: a dropped generator would close the stream behind our back.
        reader = cast(Generator[bytes, None, None], response.iter_bytes())
        stack.callback(reader.close)
        assert next(reader).startswith(b"retry:")  # it is being served
    else:
        response.read()
    return response


def test_streams_beyond_the_limit_are_refused_until_one_closes(guarded_api: Guarded) -> None:
    base_url = guarded_api.client.base_url
    clients = [httpx.Client(base_url=base_url, timeout=10) for _ in range(MAX_STREAMS + 2)]
    try:
        with ExitStack() as held:
            for client in clients[:MAX_STREAMS]:
                assert _open_stream(client, held).status_code == 200
            with ExitStack() as extra:
                refused = _open_stream(clients[MAX_STREAMS], extra)
                assert refused.status_code == 503
                assert f"limit of {MAX_STREAMS} live streams" in refused.json()["error"]
                assert refused.headers["retry-after"].isdigit()
        # The streams above are closed: the server sees the disconnects and their places
        # come free, so a new stream is served again.
        deadline = time.monotonic() + 10
        while True:
            with ExitStack() as again:
                status = _open_stream(clients[-1], again).status_code
            if status == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert status == 200
    finally:
        for client in clients:
            client.close()


def test_a_stream_whose_client_stops_reading_is_closed() -> None:
    """A send the client does not take within the timeout ends that stream and frees it."""

    async def scenario() -> tuple[list[Message], list[Message]]:
        limiter = StreamLimiter(max_streams=1, send_timeout_s=0.3)
        stuck_after = 3
        sent: list[Message] = []

        async def endless() -> AsyncIterator[bytes]:
            while True:
                yield b"data: x\n\n"
                await asyncio.sleep(0)

        async def client_that_stops_reading(message: Message) -> None:
            sent.append(message)
            if len(sent) >= stuck_after:  # its socket buffers are full from here on
                await asyncio.Event().wait()

        async def connected() -> Message:
            await asyncio.Event().wait()
            raise AssertionError("unreachable")

        scope = {"type": "http", "asgi": {"spec_version": "2.4"}, "method": "GET"}
        first = limiter.response(endless(), media_type="text/event-stream")
        running = asyncio.ensure_future(first(scope, connected, client_that_stops_reading))
        while len(sent) < stuck_after:
            await asyncio.sleep(0.01)
        # Meanwhile the one place is taken: another client is refused.
        refused: list[Message] = []

        async def record(message: Message) -> None:
            refused.append(message)

        second = limiter.response(endless(), media_type="text/event-stream")
        await second(scope, connected, record)
        async with asyncio.timeout(5):  # the stuck stream ends by itself
            await running
        assert limiter.open == 0
        return sent, refused

    sent, refused = asyncio.run(scenario())
    assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == 200
    assert len(sent) == 3  # nothing more was pushed at the stuck client
    assert refused[0]["status"] == 503


def test_agent_credentials_never_reach_an_execution_error() -> None:
    """The agent URL may carry a user and password; errors are stored in executions."""
    port = free_port()  # nothing listens there
    secret_url = f"http://agent-user:{AGENT_KEY}@127.0.0.1:{port}/?key={AGENT_KEY}"

    async def attempt() -> tuple[str, str]:
        client = AgentClient(base_url=secret_url, timeout_s=5)
        try:
            with pytest.raises(AgentError) as chat_error:
                await client.chat(agent="default", prompt="hi", memories=[])
            with pytest.raises(AgentError) as list_error:
                await client.list_models()
        finally:
            await client.aclose()
        return str(chat_error.value), str(list_error.value)

    for message in asyncio.run(attempt()):
        assert f"127.0.0.1:{port}" in message, message
        assert AGENT_KEY not in message and "agent-user" not in message, message


HOSTILE = "hi\x1b]0;pwned-title\x07 \x1b[2Jcleared \x1b]52;c;Y2xpcGJvYXJk\x07copied\x9b31m"


def test_the_cli_prints_agent_text_without_terminal_control_sequences(
    system: System, api: httpx.Client, make_task_flow, fake_agent
) -> None:
    """An agent (or a prompt's author) must not retitle, clear or write the clipboard of the
    terminal of whoever reads a run."""
    from typer.testing import CliRunner

    from cli import app as cli_app

    flow = make_task_flow(prompts=[HOSTILE])
    runner = CliRunner()
    env = {"TASKFLOWS_API_URL": system.api_url, "TASKFLOWS_API_TOKEN": "", "COLUMNS": "200"}
    followed = runner.invoke(cli_app, ["run", flow["call_name"], "--follow"], env=env)
    assert followed.exit_code == 0, followed.output
    executions = api.get("/api/executions/recent", params={"limit": 50}).json()
    execution = next(e for e in executions if e["flow_id"] == flow["id"])
    assert HOSTILE in execution["prompt_results"][0]["response"]  # the API keeps it as is
    shown = runner.invoke(cli_app, ["executions", "show", str(execution["id"])], env=env)
    assert shown.exit_code == 0, shown.output
    for output in (followed.output, shown.output):
        assert "cleared" in output and "copied" in output  # the text itself is shown
        assert "pwned-title" not in output  # a sequence's payload goes with it
        for control in ("\x1b]", "\x07", "\x1b[2J", "\x9b"):
            assert control not in output, (control, output)


def test_the_demo_agent_bounds_its_answers_and_its_request_log() -> None:
    assert DemoAgent().requests.maxlen == REQUEST_LOG_SIZE
    agent = DemoAgent(requests=deque(maxlen=3))

    async def ask() -> list[int]:
        transport = httpx.ASGITransport(app=create_demo_agent(agent))
        sizes = []
        async with httpx.AsyncClient(transport=transport, base_url="http://agent") as client:
            for prompt in ("[size=999999999999]", "[size=1.2.3]", "a", "b", "c"):
                answer = await client.post(
                    "/v1/chat/completions",
                    json={"model": "default", "messages": [{"role": "user", "content": prompt}]},
                )
                assert answer.status_code == 200
                sizes.append(len(answer.json()["choices"][0]["message"]["content"]))
        return sizes

    sizes = asyncio.run(ask())
    assert sizes[0] == MAX_ANSWER_CHARS
    assert sizes[1] < 100
    assert [request.prompt for request in agent.requests] == ["a", "b", "c"]


@pytest.mark.slow
@pytest.mark.browser
def test_the_page_asks_for_the_token_once_and_then_runs_live(guarded_api: Guarded) -> None:
    """With a token, the page shell loads, asks for the token, and then shows everything,
    the live stream included (through the session cookie)."""
    from playwright.sync_api import expect, sync_playwright

    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        pytest.skip("chromium is not installed: `apt-get install -y chromium`")
    client = guarded_api.client
    name = f"guarded-page-{uuid.uuid4().hex[:6]}"
    created = client.post(
        "/api/task_flows", json={"call_name": name, "prompts": ["hi"]}, headers=AUTH
    )
    assert created.status_code == 201, created.text
    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            page = browser.new_context(base_url=str(client.base_url)).new_page()
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto("/")
            dialog = page.locator("#token-dialog")
            expect(dialog).to_be_visible()
            expect(page.get_by_role("button", name=f"Run {name}")).to_have_count(0)
            page.locator("#token-input").fill(TOKEN)
            page.get_by_role("button", name="Save token").click()
            expect(page.get_by_role("button", name=f"Run {name}")).to_be_visible()
            expect(page.locator("#live")).to_have_text("Live")  # the stream, not polling
            # A run started from the page goes through (the token is sent with writes).
            page.get_by_role("button", name=f"Run {name}").click()
            # Reloading the tab keeps the token for the session: no second question.
            page.reload()
            expect(page.locator("#live")).to_have_text("Live")
            expect(dialog).to_be_hidden()
        finally:
            browser.close()
    assert not errors, errors
    recent = client.get("/api/executions/recent", headers=AUTH).json()
    assert any(execution["call_name"] == name for execution in recent)


def test_without_a_token_only_this_machine_is_answered() -> None:
    """`uvicorn --host 0.0.0.0` run by hand without a token: other machines are refused."""

    async def ok(scope: Scope, receive: Receive, send: Send) -> None:
        await PlainTextResponse("ok")(scope, receive, send)

    async def status_for(guard: HostOriginGuard, client: str) -> int:
        transport = httpx.ASGITransport(app=guard, client=(client, 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as http:
            return (await http.get("/api/task_flows")).status_code

    local_only = HostOriginGuard(ok, hosts=None, cors_origins=[], local_clients_only=True)
    with_token = HostOriginGuard(ok, hosts=None, cors_origins=[], local_clients_only=False)
    async def statuses() -> list[int]:
        return [
            await status_for(local_only, "192.0.2.7"),
            await status_for(local_only, "127.0.0.1"),
            await status_for(local_only, "::ffff:127.0.0.1"),
            await status_for(with_token, "192.0.2.7"),
        ]

    assert asyncio.run(statuses()) == [403, 200, 200, 200]
