"""The hot reads' cache (`api/read_cache.py`) is never stale: every change made in SQL by
another connection shows in the next GET once the API has heard its NOTIFY, the cache is
off while the API's LISTEN connection is down, and its bodies are byte for byte the FastAPI
routes' (which always read the tables).

"The API has heard it" is known without sleeping: PostgreSQL delivers notifications in
commit order, so after a change, a touch of a sentinel execution, and that sentinel's event
on the live stream, the API's one listener has read the change's notification too.

Writes made with `session_replication_role = replica` fire no trigger, so no NOTIFY: the
cache cannot know of them. They show here that the answers really come from memory (and
so that the tests above could fail), and that with the cache off they do not.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from stack.commands import api_argv
from stack.ports import free_port
from tests.conftest import System
from tests.test_stream import LISTEN_APP_NAME, EventReader

HEARD_WITHIN_S = 2.0


def _insert_execution(db: psycopg.Connection[Any], status: str, results: int = 1) -> int:
    row = db.execute(
        "INSERT INTO flow_executions"
        " (flow_id, status, total_prompts, call_name, agent, prompts)"
        ' VALUES (0, %s, 3, %s, \'default\', \'["a", "b", "c"]\') RETURNING id',
        (status, f"read-cache-{uuid.uuid4().hex[:8]}"),
    ).fetchone()
    assert row is not None
    execution_id = int(row["id"])
    for index in range(results):
        _insert_result(db, execution_id, index)
    return execution_id


def _insert_result(db: psycopg.Connection[Any], execution_id: int, index: int) -> None:
    db.execute(
        "INSERT INTO execution_results (execution_id, prompt_index, success, item)"
        " VALUES (%s, %s, true, jsonb_build_object('index', %s::int, 'response', %s::text))",
        (execution_id, index, index, f"answer {index}"),
    )


@pytest.fixture
def rows(db: psycopg.Connection[Any]) -> Iterator[dict[str, int]]:
    """A running execution with one result to change, and a sentinel to touch; deleted after."""
    made = {
        "running": _insert_execution(db, "running"),
        "sentinel": _insert_execution(db, "completed"),
    }
    # No worker renews this row's lease: without a heartbeat ahead, the reconciler fails it
    # as crashed after LEASE_EXPIRY_S, and a slow test would no longer find it active.
    db.execute(
        "UPDATE flow_executions SET heartbeat_at = now() + interval '1 hour' WHERE id = %s",
        (made["running"],),
    )
    yield made
    db.execute("DELETE FROM flow_executions WHERE id = ANY(%s)", (list(made.values()),))


@pytest.fixture
def heard(
    system: System, db: psycopg.Connection[Any], rows: dict[str, int]
) -> Iterator[Callable[[], None]]:
    """`heard()`: returns once the API has read every NOTIFY committed before the call."""
    sentinel = rows["sentinel"]
    # The read timeout bounds each wait for the event (heartbeats come only every 15 s).
    timeout = httpx.Timeout(10, read=HEARD_WITHIN_S)
    with httpx.Client(base_url=system.api_url, timeout=timeout) as client:
        with client.stream(
            "GET", "/api/executions/stream", params={"ids": str(sentinel)}
        ) as response:
            assert response.status_code == 200
            reader = EventReader(response)
            assert reader.next().event == "snapshot"

            def wait() -> None:
                marker = f"touched-{uuid.uuid4().hex[:8]}"
                db.execute(
                    "UPDATE flow_executions SET error = %s, updated_at = now() WHERE id = %s",
                    (marker, sentinel),
                )
                reader.until(
                    lambda e: e.event == "execution" and e.data["error"] == marker,
                    timeout=HEARD_WITHIN_S,
                )

            yield wait


def _paths(execution_id: int) -> list[str]:
    return [
        "/api/executions/active",
        "/api/executions/recent",
        "/api/executions/recent?limit=20&results=false",
        f"/api/executions/recent?limit=5&before_id={execution_id + 1}",
        f"/api/executions/{execution_id}",
    ]


def _get_twice(api: httpx.Client, path: str) -> httpx.Response:
    """The second GET of `path`, which the cache answers when it is on."""
    assert api.get(path).status_code in (200, 404)
    return api.get(path)


def _routed(api: httpx.Client, path: str) -> httpx.Response:
    """`path` through the FastAPI route (a parameter it ignores keeps it off the fast path)."""
    return api.get(path + ("&" if "?" in path else "?") + "unknown=1")


def _skip_triggers(db: psycopg.Connection[Any], sql: str, params: tuple[Any, ...]) -> None:
    with db.transaction():
        db.execute("SET LOCAL session_replication_role = replica")
        db.execute(sql, params)


def test_cached_bodies_are_the_routes_bytes(api: httpx.Client, rows: dict[str, int]) -> None:
    for path in _paths(rows["running"]):
        cached = _get_twice(api, path)
        routed = _routed(api, path)
        assert cached.status_code == routed.status_code == 200, path
        assert cached.headers["content-type"] == routed.headers["content-type"]
        assert cached.content == routed.content, path


def _error_of(response: httpx.Response, execution_id: int) -> object:
    """The `error` of `execution_id` in an execution or a list of them."""
    body = response.json()
    found = [e for e in (body if isinstance(body, list) else [body]) if e["id"] == execution_id]
    assert len(found) == 1, response.text
    return found[0]["error"]


def test_answers_come_from_memory_until_a_notify_says_otherwise(
    api: httpx.Client, db: psycopg.Connection[Any], rows: dict[str, int], heard: Callable[[], None]
) -> None:
    running = rows["running"]
    path = f"/api/executions/{running}"
    before = _get_twice(api, path).content
    _skip_triggers(db, "UPDATE flow_executions SET error = 'unheard' WHERE id = %s", (running,))
    assert api.get(path).content == before, "not answered from memory"
    assert _error_of(_routed(api, path), running) == "unheard"
    # Any notified write to the execution, even one that leaves `updated_at` alone.
    db.execute("UPDATE flow_executions SET error = 'heard' WHERE id = %s", (running,))
    heard()
    for each in _paths(running):
        assert _error_of(api.get(each), running) == "heard", each


def _status_update(db: psycopg.Connection[Any], execution_id: int) -> None:
    # `updated_at` left alone on purpose: the trigger used to stay silent then.
    db.execute(
        "UPDATE flow_executions SET status = 'completed', completed_at = now() WHERE id = %s",
        (execution_id,),
    )


def _result_insert(db: psycopg.Connection[Any], execution_id: int) -> None:
    _insert_result(db, execution_id, 1)


def _delete(db: psycopg.Connection[Any], execution_id: int) -> None:
    db.execute("DELETE FROM flow_executions WHERE id = %s", (execution_id,))


@pytest.mark.parametrize("change", [_status_update, _result_insert, _delete])
def test_a_change_made_in_sql_shows_in_the_next_get_once_notified(
    api: httpx.Client,
    db: psycopg.Connection[Any],
    rows: dict[str, int],
    heard: Callable[[], None],
    change: Callable[[psycopg.Connection[Any], int], None],
) -> None:
    running = rows["running"]
    paths = _paths(running)
    before = {path: _get_twice(api, path) for path in paths}
    assert before[f"/api/executions/{running}"].json()["status"] == "running"

    change(db, running)
    heard()  # at most HEARD_WITHIN_S: the API has read the change's NOTIFY

    after = {path: api.get(path) for path in paths}
    for path in paths:
        assert after[path].content != before[path].content, f"{path} is stale"
        routed = _routed(api, path)
        assert (after[path].status_code, after[path].content) == (
            routed.status_code,
            routed.content,
        ), path
    active_ids = [e["id"] for e in after["/api/executions/active"].json()]
    recent_ids = [e["id"] for e in after["/api/executions/recent"].json()]
    one = after[f"/api/executions/{running}"]
    if change is _status_update:
        assert one.json()["status"] == "completed"
        assert running not in active_ids and running in recent_ids
    if change is _result_insert:
        assert [r["response"] for r in one.json()["prompt_results"]] == ["answer 0", "answer 1"]
        assert running in active_ids
    if change is _delete:
        assert one.status_code == 404
        assert running not in active_ids and running not in recent_ids


@contextmanager
def _connections_refused(system: System, database: str) -> Iterator[None]:
    """New connections to `database` are refused (those open stay): nothing can LISTEN again."""
    # A database cannot refuse connections from a session of its own: ask from another one.
    other = make_conninfo(system.database_url, dbname="postgres")
    with psycopg.connect(other, autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
        try:
            yield
        finally:
            admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')


def test_the_cache_is_off_while_the_listen_connection_is_down(
    system: System,
    api: httpx.Client,
    db: psycopg.Connection[Any],
    rows: dict[str, int],
    heard: Callable[[], None],
) -> None:
    running = rows["running"]
    path = f"/api/executions/{running}"
    _get_twice(api, path)
    _skip_triggers(db, "UPDATE flow_executions SET error = 'unheard' WHERE id = %s", (running,))
    assert api.get(path).json()["error"] is None, "the cache is not on: this test shows nothing"

    with _connections_refused(system, db.info.dbname):
        killed = db.execute(
            "SELECT count(pg_terminate_backend(pid, 5000)) AS n FROM pg_stat_activity "
            "WHERE datname = current_database() AND application_name = %s",
            (LISTEN_APP_NAME,),
        ).fetchone()
        assert killed is not None and killed["n"] == 1
        # The API cannot listen again while connections are refused: what it answers now,
        # it answers with its LISTEN connection down.
        seen = _poll(lambda: api.get(path).json()["error"] == "unheard")
        assert seen, "a change made while the LISTEN connection was down is not shown"
        assert _listeners(db) == 0
        for value in ("first", "second"):
            _skip_triggers(
                db, "UPDATE flow_executions SET error = %s WHERE id = %s", (value, running)
            )
            assert api.get(path).json()["error"] == value
            assert api.get(path).json()["error"] == value

    assert _poll(lambda: _listeners(db) == 1, timeout=30), "the API never listened again"
    # Listening again: the cache is on again, and started empty.
    heard()
    assert api.get(path).json()["error"] == "second"
    _skip_triggers(db, "UPDATE flow_executions SET error = 'third' WHERE id = %s", (running,))
    assert api.get(path).json()["error"] == "second"


def _listeners(db: psycopg.Connection[Any]) -> int:
    row = db.execute(
        "SELECT count(*) AS n FROM pg_stat_activity "
        "WHERE datname = current_database() AND application_name = %s",
        (LISTEN_APP_NAME,),
    ).fetchone()
    assert row is not None
    return int(row["n"])


def _poll(done: Callable[[], bool], timeout: float = HEARD_WITHIN_S) -> bool:
    """Ask `done()` every 20 ms until it is true or `timeout` seconds have passed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if done():
            return True
        time.sleep(0.02)
    return done()


@contextmanager
def _api_process(system: System, env: dict[str, str]) -> Iterator[httpx.Client]:
    port = free_port()
    child = system.supervisor.start(
        f"api-read-cache-{port}",
        api_argv(port),
        env={**system.env, **env},
        ready_url=f"http://127.0.0.1:{port}/healthz",
        ready_timeout=60,
    )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            yield client
    finally:
        child.stop()


def test_read_cache_false_reads_the_tables_every_time(
    system: System, db: psycopg.Connection[Any], rows: dict[str, int]
) -> None:
    running = rows["running"]
    with _api_process(system, {"READ_CACHE": "false"}) as uncached:
        for path in _paths(running):
            _get_twice(uncached, path)
        _skip_triggers(db, "UPDATE flow_executions SET error = 'unheard' WHERE id = %s", (running,))
        for path in _paths(running):
            assert _error_of(uncached.get(path), running) == "unheard", path
