"""Live agent output: streamed answers are assembled, published while they are written,
and behave like plain answers for retries, timeouts and errors."""

from __future__ import annotations

import json
import threading
import time
import uuid

import httpx
import psycopg

from cli.sse import events as sse_events
from flows.channels import PARTIAL_OUTPUT
from stack.demo_agent import DemoAgent
from tests.conftest import System, wait_for_execution

WORDS = " ".join(f"word{n}" for n in range(15))


def _run(api: httpx.Client, flow_id: int) -> dict:
    response = api.post(f"/api/task_flows/{flow_id}/run")
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_partial_text_is_published_before_the_prompt_completes(
    system: System, api: httpx.Client, fake_agent: DemoAgent, make_task_flow
):
    prompt = f"[chunkdelay=0.25] {WORDS}"
    flow = make_task_flow(prompts=[prompt])
    partials: list[tuple[float, dict]] = []
    listening = threading.Event()
    stop = threading.Event()

    def listen() -> None:
        with psycopg.connect(system.database_url, autocommit=True) as conn:
            conn.execute(f"LISTEN {PARTIAL_OUTPUT}")
            listening.set()
            while not stop.is_set():
                for notify in conn.notifies(timeout=0.2, stop_after=1):
                    partials.append((time.monotonic(), json.loads(notify.payload)))

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    listening.wait(10)
    started = _run(api, flow["id"])
    final = wait_for_execution(api, started["execution_id"])
    completed_seen = time.monotonic()
    stop.set()
    listener.join(5)

    assert final["status"] == "completed", final
    mine = [p for _, p in partials if p["id"] == started["execution_id"]]
    assert len(mine) >= 2, "the answer arrived in several live pieces"
    text = "".join(p["delta"] for p in sorted(mine, key=lambda p: p["offset"]))
    response = final["prompt_results"][0]["response"]
    assert response.startswith(text) and text, (text, response)
    assert response == f"Echo: {WORDS}"
    first_at = min(at for at, p in partials if p["id"] == started["execution_id"])
    assert first_at < completed_seen - 1.0, "partial text showed up well before completion"
    request = fake_agent.requests[-1]
    assert request.stream is True


def test_a_stall_mid_stream_times_out_with_a_clear_error(
    api: httpx.Client, fake_agent: DemoAgent, make_task_flow
):
    flow = make_task_flow(prompts=[f"[stall] {WORDS}"])
    execution = wait_for_execution(api, _run(api, flow["id"])["execution_id"], timeout=90)
    assert execution["status"] == "failed"
    assert "stalled mid-answer" in execution["error"] and "timed out" in execution["error"]
    assert execution["prompt_results"][0]["attempts"] == 3  # retried like any timeout


def test_an_agent_that_refuses_streaming_still_works_and_is_remembered(
    api: httpx.Client, fake_agent: DemoAgent, make_task_flow
):
    fake_agent.behaviour.streaming = False
    agent = f"plain-{uuid.uuid4().hex[:8]}"
    flow = make_task_flow(prompts=["first plain", "second plain"], agent=agent)
    execution = wait_for_execution(api, _run(api, flow["id"])["execution_id"])

    assert execution["status"] == "completed", execution
    assert [r["response"] for r in execution["prompt_results"]] == [
        "Echo: first plain",
        "Echo: second plain",
    ]
    sent = [(r.prompt, r.stream) for r in fake_agent.requests if r.model == agent]
    # Refused once, then plain requests only: the refusal is remembered for this agent.
    assert sent == [("first plain", True), ("first plain", False), ("second plain", False)]


def test_streamed_and_plain_results_have_the_same_shape(
    api: httpx.Client, fake_agent: DemoAgent, make_task_flow
):
    flow = make_task_flow(prompts=[WORDS])
    streamed = wait_for_execution(api, _run(api, flow["id"])["execution_id"])
    fake_agent.behaviour.streaming = False
    plain_flow = make_task_flow(prompts=[WORDS], agent=f"plain-{uuid.uuid4().hex[:8]}")
    plain = wait_for_execution(api, _run(api, plain_flow["id"])["execution_id"])

    a, b = streamed["prompt_results"][0], plain["prompt_results"][0]
    assert set(a) == set(b)
    assert a["response"] == b["response"] == f"Echo: {WORDS}"
    assert a["usage"] == b["usage"]


def _wait_for_partial(api: httpx.Client, execution_id: int, min_chars: int) -> dict:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        execution = api.get(f"/api/executions/{execution_id}").json()
        partial = execution.get("partial_response")
        if partial and len(partial["text"]) >= min_chars:
            return execution
        assert execution["status"] in ("queued", "running"), execution
        time.sleep(0.05)
    raise AssertionError("no partial response showed up")


def test_reading_an_execution_mid_answer_shows_the_text_so_far(
    api: httpx.Client, fake_agent: DemoAgent, make_task_flow
):
    flow = make_task_flow(prompts=["quick one", f"[chunkdelay=0.3] {WORDS}"])
    started = _run(api, flow["id"])
    mid = _wait_for_partial(api, started["execution_id"], min_chars=10)

    partial = mid["partial_response"]
    assert mid["status"] == "running" and partial["index"] == 1 and partial["offset"] == 0
    final = wait_for_execution(api, started["execution_id"])
    assert final["prompt_results"][1]["response"].startswith(partial["text"])
    assert final.get("partial_response") is None


def test_a_stream_joined_mid_answer_first_gets_the_text_so_far(
    system: System, api: httpx.Client, fake_agent: DemoAgent, make_task_flow
):
    flow = make_task_flow(prompts=[f"[chunkdelay=0.3] {WORDS}"])
    started = _run(api, flow["id"])
    _wait_for_partial(api, started["execution_id"], min_chars=12)

    events: list[tuple[str, dict]] = []
    with httpx.stream(
        "GET",
        f"{system.api_url}/api/executions/stream",
        params={"partials": "true"},
        timeout=30,
    ) as response:
        for event in sse_events(response.iter_lines()):
            events.append((event.event, event.json()))
            if event.event == "partial":
                break
    assert events[0][0] == "snapshot"
    kind, first_partial = events[1]
    assert kind == "partial" and first_partial["id"] == started["execution_id"]
    assert first_partial["offset"] == 0 and len(first_partial["delta"]) >= 12
    final = wait_for_execution(api, started["execution_id"])
    assert final["prompt_results"][0]["response"].startswith(first_partial["delta"])
