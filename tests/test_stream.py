"""The live stream `GET /api/executions/stream`, read over real HTTP like a browser would.

The API process listens to PostgreSQL (LISTEN/NOTIFY) and sends Server-Sent Events: a
`snapshot` first, then one `execution` event per change. These tests run flows through
the real worker and fake agent and check what a client of the stream sees. The latency from
the fake agent's answer to the event is measured and printed (`-s` shows it), not asserted.
"""

from __future__ import annotations

import asyncio
import json
import signal
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import psycopg
import pytest
import pytest_asyncio

from api.live import ExecutionFeed
from api.routes.stream import _messages
from cli.sse import EventDecoder, events
from flows.channels import EXECUTION_CHANGES
from flows.database import create_pool
from stack.demo_agent import DemoAgent
from stack.ports import free_port
from tests.conftest import System, wait_for_execution

DELAY_S = 0.3
LISTEN_APP_NAME = "taskflows-api-live"


@dataclass
class Event:
    """One Server-Sent Event as a client sees it, its data decoded."""

    id: int | None
    event: str
    data: Any
    received_at: float  # time.time() when its last line arrived


class EventReader:
    """Reads an SSE response with the CLI's reader (`retry:` is noted, not returned)."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._decoder = EventDecoder()
        self._events = events(response.iter_lines(), self._decoder)

    @property
    def retry_ms(self) -> int | None:
        return self._decoder.retry_ms

    def next(self) -> Event:
        for event in self._events:
            event_id = int(event.id) if event.id is not None else None
            return Event(event_id, event.event, event.json(), event.received_at)
        raise EOFError("the stream ended")

    def until(self, accept: Callable[[Event], bool], timeout: float = 30.0) -> Event:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            event = self.next()
            if accept(event):
                return event
        raise AssertionError("no matching event in time")


@pytest.fixture
def sse(system: System) -> Iterator[Callable[..., Any]]:
    """Open streams with `with sse(ids=..., last_event_id=...) as reader:`."""
    client = httpx.Client(base_url=system.api_url, timeout=httpx.Timeout(10, read=30))

    @contextmanager
    def open_stream(
        ids: list[int] | None = None, last_event_id: int | None = None, partials: bool = False
    ) -> Iterator[EventReader]:
        params = {"ids": ",".join(map(str, ids))} if ids else {}
        if partials:
            params["partials"] = "true"
        headers = {"Last-Event-ID": str(last_event_id)} if last_event_id else None
        with client.stream(
            "GET", "/api/executions/stream", params=params, headers=headers
        ) as response:
            assert response.status_code == 200, response.read()
            yield EventReader(response)

    with client:
        yield open_stream


def _execution_events(reader: EventReader, execution_id: int) -> Iterator[Event]:
    while True:
        event = reader.next()
        if event.event == "execution" and event.data["id"] == execution_id:
            yield event


def test_stream_sends_a_snapshot_then_each_prompt_until_completed(
    api: httpx.Client, fake_agent: DemoAgent, make_task_flow, sse
):
    prompts = [f"step {n} [delay={DELAY_S}] {uuid.uuid4().hex[:6]}" for n in range(1, 5)]
    flow = make_task_flow(prompts=prompts)

    with sse() as reader:
        snapshot = reader.next()
        assert snapshot.event == "snapshot"
        assert isinstance(snapshot.data["executions"], list)
        assert reader.retry_ms is not None
        assert reader.response.headers["content-type"].startswith("text/event-stream")
        assert reader.response.headers["cache-control"] == "no-cache"
        assert reader.response.headers["x-accel-buffering"] == "no"

        execution_id = api.post(f"/api/task_flows/{flow['id']}/run").json()["execution_id"]
        seen: list[Event] = []
        for event in _execution_events(reader, execution_id):
            seen.append(event)
            if event.data["status"] in ("completed", "failed", "cancelled"):
                break

    assert seen[-1].data["status"] == "completed"
    assert seen[-1].data["current_prompt_index"] == 4 == seen[-1].data["total_prompts"]
    assert seen[-1].data["results_count"] == 4
    assert seen[-1].data["last_result"]["response"].startswith("Echo: step 4")
    ids = [snapshot.id, *(event.id for event in seen)]
    assert ids == sorted(ids) and len(set(ids)) == len(ids), "event ids strictly increase"
    indexes = [event.data["current_prompt_index"] for event in seen]
    assert indexes == sorted(indexes)
    assert {1, 2, 3} <= set(indexes), f"every finished prompt is an event: {indexes}"
    running = [e for e in seen if e.data["status"] == "running" and e.data["current_prompt"]]
    assert running and running[0].data["current_prompt"] == prompts[0]
    assert seen[-1].data["prefect_url"].endswith(seen[-1].data["flow_run_id"])
    assert "prompt_results" not in seen[-1].data, "events stay small: no full result list"

    _report_latency(fake_agent, prompts, seen)


def _report_latency(agent: DemoAgent, prompts: list[str], events: list[Event]) -> None:
    """Print how long after the agent's answer each finished prompt reached the client."""
    answered = {
        request.prompt: request.received_at + DELAY_S
        for request in agent.requests
        if request.prompt in prompts
    }
    latencies = []
    for event in events:
        index = event.data["current_prompt_index"]
        # The event of prompt `index` finishing (the last one may come merged with "completed").
        finished = event.data["status"] == "running" and event.data["results_count"] == index
        if finished and 1 <= index <= len(prompts):
            latencies.append((event.received_at - answered[prompts[index - 1]]) * 1000)
    assert latencies
    print(
        f"\nSSE latency, fake agent answer -> event at the client, {len(latencies)} prompts: "
        f"min {min(latencies):.1f} ms, median {statistics.median(latencies):.1f} ms, "
        f"max {max(latencies):.1f} ms"
    )


def test_partial_events_carry_the_answer_while_it_is_written_when_asked_for(
    api: httpx.Client, fake_agent: DemoAgent, make_task_flow, sse
):
    words = " ".join(f"word{n}" for n in range(12))
    flow = make_task_flow(prompts=[f"[chunkdelay=0.15] {words}"])
    with sse(partials=True) as reader, sse() as plain:
        reader.next()
        plain.next()
        execution_id = api.post(f"/api/task_flows/{flow['id']}/run").json()["execution_id"]
        text, partials = "", 0
        while True:
            event = reader.next()
            if event.data.get("id") != execution_id:
                continue
            if event.event == "partial":
                assert event.data["index"] == 0 and event.data["offset"] == len(text)
                text += event.data["delta"]
                partials += 1
            elif event.data["status"] == "completed":
                break
        plain_events = [plain.next() for _ in range(3)]

    assert partials >= 2, "the answer came in pieces, before the prompt completed"
    # The last piece may never be published: the final response supersedes it.
    assert event.data["last_result"]["response"].startswith(text) and "word5" in text
    assert all(e.event != "partial" for e in plain_events), "partials only when asked for"


def test_reconnecting_with_last_event_id_starts_with_a_fresh_snapshot(
    api: httpx.Client, fake_agent: DemoAgent, make_task_flow, sse
):
    flow = make_task_flow(prompts=["slow [delay=1.5]", "done"])
    with sse() as reader:
        first = reader.next()
        execution_id = api.post(f"/api/task_flows/{flow['id']}/run").json()["execution_id"]
        last = next(_execution_events(reader, execution_id))

    with sse(last_event_id=last.id) as reader:
        snapshot = reader.next()
        assert snapshot.event == "snapshot"
        assert snapshot.id > last.id > first.id
        active = {e["id"]: e for e in snapshot.data["executions"]}
        assert execution_id in active, "the execution still running is in the snapshot"
        assert active[execution_id]["status"] in ("queued", "running")
        done = reader.until(
            lambda e: (
                e.event == "execution"
                and e.data["id"] == execution_id
                and e.data["status"] == "completed"
            )
        )
        assert done.id > snapshot.id


def test_snapshot_includes_the_executions_asked_for(
    api: httpx.Client, fake_agent: DemoAgent, make_task_flow, sse
):
    flow = make_task_flow(prompts=["finished before the stream opens"])
    execution_id = api.post(f"/api/task_flows/{flow['id']}/run").json()["execution_id"]
    wait_for_execution(api, execution_id)

    with sse() as reader:
        plain = reader.next()
    assert execution_id not in [e["id"] for e in plain.data["executions"]]

    with sse(ids=[execution_id, 10**17]) as reader:  # the second does not exist
        asked = reader.next()
    (shown,) = [e for e in asked.data["executions"] if e["id"] == execution_id]
    assert shown["status"] == "completed" and shown["results_count"] == 1
    assert shown["last_result"]["response"] == "Echo: finished before the stream opens"


def test_summaries_answer_what_the_stream_sends(
    api: httpx.Client, fake_agent: DemoAgent, make_task_flow, sse
):
    flow = make_task_flow(prompts=["summarised"])
    done_id = api.post(f"/api/task_flows/{flow['id']}/run").json()["execution_id"]
    wait_for_execution(api, done_id)
    with sse(ids=[done_id]) as reader:
        snapshot = reader.next()
    (streamed,) = [e for e in snapshot.data["executions"] if e["id"] == done_id]

    answer = api.get("/api/executions/summaries", params={"ids": str(done_id), "active": "false"})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"executions": [streamed]}, "the same summary, byte for byte"
    assert streamed["results_count"] == 1 and "prompt_results" not in streamed
    assert streamed["last_result"]["response"] == "Echo: summarised"

    slow = make_task_flow(prompts=["still going [delay=3]"])
    running_id = api.post(f"/api/task_flows/{slow['id']}/run").json()["execution_id"]
    active = api.get("/api/executions/summaries").json()["executions"]
    assert running_id in [e["id"] for e in active], "the active ones are there by default"
    assert done_id not in [e["id"] for e in active]
    wait_for_execution(api, running_id)


@pytest.mark.parametrize("path", ["/api/executions/stream", "/api/executions/summaries"])
@pytest.mark.parametrize("ids", ["abc", "1,-2", "0", str(2**63), ",".join(["1"] * 201)])
def test_bad_ids_are_refused_with_a_sentence(api: httpx.Client, path: str, ids: str):
    response = api.get(path, params={"ids": ids})
    assert response.status_code == 422, response.text
    assert response.json()["error"].startswith("ids ")


def test_open_streams_hold_no_database_connection_and_share_one_listener(
    api: httpx.Client, db: psycopg.Connection[Any], sse
):
    with sse() as first:
        first.next()
        with _many_streams(sse, 15):
            # More streams than the pool has connections (10): requests still get one.
            started = time.monotonic()
            assert api.get("/api/executions/recent", params={"limit": 1}).status_code == 200
            assert time.monotonic() - started < 5, "the pool is not exhausted by streams"
            listeners = db.execute(
                "SELECT count(*) AS n FROM pg_stat_activity "
                "WHERE datname = current_database() AND application_name = %s",
                (LISTEN_APP_NAME,),
            ).fetchone()
            assert listeners is not None and listeners["n"] == 1


@contextmanager
def _many_streams(sse: Callable[..., Any], count: int) -> Iterator[None]:
    from contextlib import ExitStack

    with ExitStack() as stack:
        for _ in range(count):
            stack.enter_context(sse()).next()
        yield


def test_streams_get_a_fresh_snapshot_after_the_listener_loses_its_connection(
    api: httpx.Client, db: psycopg.Connection[Any], fake_agent: DemoAgent, make_task_flow, sse
):
    flow = make_task_flow(prompts=["after the reconnect"])
    with sse() as reader:
        before = reader.next()
        killed = db.execute(
            "SELECT count(pg_terminate_backend(pid)) AS n FROM pg_stat_activity "
            "WHERE datname = current_database() AND application_name = %s",
            (LISTEN_APP_NAME,),
        ).fetchone()
        assert killed is not None and killed["n"] == 1

        again = reader.until(lambda e: e.event == "snapshot", timeout=20)
        assert again.id > before.id
        execution_id = api.post(f"/api/task_flows/{flow['id']}/run").json()["execution_id"]
        done = reader.until(
            lambda e: (
                e.event == "execution"
                and e.data["id"] == execution_id
                and e.data["status"] == "completed"
            )
        )
        assert done.data["current_prompt_index"] == 1


def test_the_api_stops_at_once_on_ctrl_c_while_streams_are_open(system: System):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    child = system.supervisor.start(
        "api-shutdown",
        [sys.executable, "-m", "uvicorn", "api.app:app", "--port", str(port)],
        env=system.env,
        ready_url=f"{url}/healthz",
        ready_timeout=90,
    )
    try:
        with httpx.Client(base_url=url, timeout=httpx.Timeout(10, read=30)) as client:
            with client.stream("GET", "/api/executions/stream") as response:
                reader = EventReader(response)
                assert reader.next().event == "snapshot"
                assert child.popen is not None
                started = time.monotonic()
                child.popen.send_signal(signal.SIGINT)
                # uvicorn waits for open responses before it stops: without the feed's
                # signal hook this would wait as long as the stream stays open.
                child.popen.wait(timeout=20)
                print(f"\nAPI stopped {time.monotonic() - started:.2f} s after Ctrl-C")
                with pytest.raises((EOFError, httpx.RemoteProtocolError)):
                    while True:
                        reader.next()
    finally:
        child.stop()


# --- the feed itself, in this process, on the test database ----------------------------


@pytest_asyncio.fixture
async def feed(system: System) -> Any:
    pool = create_pool(system.database_url, max_size=2, name="feed-test")
    await pool.open()
    feed = ExecutionFeed(
        database_url=system.database_url,
        pool=pool,
        prefect_ui_url="http://prefect.invalid",
        queue_size=3,
        application_name=f"feed-test-{uuid.uuid4().hex[:6]}",
    )
    try:
        yield feed
    finally:
        await feed.aclose()
        await pool.close()


@pytest_asyncio.fixture
async def execution_row(system: System) -> Any:
    """A bare (already ended) execution row to change by hand; deleted afterwards."""
    async with await psycopg.AsyncConnection.connect(system.database_url, autocommit=True) as conn:
        cursor = await conn.execute(
            "INSERT INTO flow_executions"
            " (flow_id, status, completed_at, total_prompts, call_name, agent, prompts)"
            " VALUES (0, 'completed', now(), 1, 'feed-test', 'default', '[\"x\"]') RETURNING id"
        )
        row = await cursor.fetchone()
        assert row is not None
        yield int(row[0])
        await conn.execute("DELETE FROM flow_executions WHERE id = %s", (row[0],))


async def _touch(database_url: str, execution_id: int, times: int) -> None:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        for _ in range(times):
            await conn.execute(
                "UPDATE flow_executions SET updated_at = now() WHERE id = %s", (execution_id,)
            )
            await asyncio.sleep(0.05)  # separate bursts, so each is its own message


@pytest.mark.asyncio
async def test_the_table_notifies_on_the_channel_the_code_listens_to(
    system: System, execution_row: int
):
    # The trigger in sql/ names its channel as a literal; flows.channels is what the code uses.
    async with await psycopg.AsyncConnection.connect(system.database_url, autocommit=True) as conn:
        await conn.execute(f"LISTEN {EXECUTION_CHANGES}")
        await conn.execute(
            "UPDATE flow_executions SET updated_at = now() WHERE id = %s", (execution_row,)
        )
        heard = None
        async for notify in conn.notifies(timeout=10):
            change = json.loads(notify.payload)
            if notify.channel == EXECUTION_CHANGES and change["id"] == execution_row:
                heard = change
                break
    assert heard is not None, "the trigger's channel is not flows.channels.EXECUTION_CHANGES"
    assert heard["status"] == "completed"


@pytest.mark.asyncio
async def test_a_subscriber_that_falls_behind_is_dropped_and_the_others_keep_going(
    system: System, feed: ExecutionFeed, execution_row: int
):
    execution_id = execution_row
    slow, quick = feed.subscribe(), feed.subscribe()
    assert b"event: snapshot" in (await asyncio.wait_for(quick.get(), 10) or b"")
    touching = asyncio.create_task(_touch(system.database_url, execution_id, 8))
    received = 0
    while not touching.done() or not quick.queue.empty():
        try:
            chunk = await asyncio.wait_for(quick.get(), 1)
        except TimeoutError:
            continue
        assert chunk is not None, "the subscriber that keeps up is never dropped"
        received += chunk.count(b"event: execution")
    await touching

    assert received > feed.queue_size, "more messages than a queue holds went through"
    assert await asyncio.wait_for(slow.get(), 1) is None, "the slow subscriber's stream ended"
    assert feed.subscriber_count == 1


@pytest.mark.asyncio
async def test_an_idle_stream_sends_heartbeats_and_ends_at_shutdown(feed: ExecutionFeed):
    messages = _messages(feed, [], heartbeat_s=0.1)
    assert (await anext(messages)).startswith(b"retry: ")
    assert b"event: snapshot" in await asyncio.wait_for(anext(messages), 10)
    assert await asyncio.wait_for(anext(messages), 1) == b": heartbeat\n\n"

    feed.end_streams()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(anext(messages), 1)
    assert feed.subscriber_count == 0
    assert await feed.subscribe().get() is None, "no new stream once shutting down"
