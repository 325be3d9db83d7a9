"""The worker's Prefect client answers the engine's re-read of a flow run that has just entered
Running itself (worker/engine_patches.py, `answer_running_rereads`). Against the real Prefect
server, with the run claimed and handed to the engine as the worker does: the flow body sees
the flow run a real read returns (run_count, state, start time and every other field but the
documented bookkeeping ones), also on Prefect's "Retry" of a failed run (run_count 2, 3), and
the server is sent no GET of the run for it; a stale FlowRun handed over gets the real read."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import httpx
from prefect import flow
from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.objects import FlowRun
from prefect.context import FlowRunContext
from prefect.flow_engine import run_flow_async
from prefect.settings import PREFECT_API_URL, PREFECT_LOGGING_TO_API_ENABLED, temporary_settings
from prefect.states import AwaitingRetry, Pending, Scheduled, State
from prefect.utilities.engine import propose_state

from tests.conftest import System
from worker import engine_patches

# What the engine's answered copy holds differently from a real read of this run (the module
# docstring of worker/engine_patches.py says why neither is used). Its empirical_policy and
# flow_version are the server's too: create_flow_run stores the flow's policy, so the engine
# fills nothing in and `skip_policy_updates` PATCHes nothing.
BOOKKEEPING = {"updated", "estimated_run_time"}


@dataclass
class _Attempt:
    """What the flow body saw in one run of the probe flow."""

    engine_copy: FlowRun  # FlowRunContext's flow run: what the engine holds
    server_copy: FlowRun  # a real read, by a client the patch never touched
    sent: list[str]  # the worker client's requests in this run before the body ran
    sent_by_body: list[str] = field(default_factory=list)  # and for the body's own read


def _requests_sent_by(client: PrefectClient) -> list[str]:
    """A list that `client` appends each request it sends to ("GET /api/flow_runs/...")."""
    sent: list[str] = []

    async def record(request: httpx.Request) -> None:
        sent.append(f"{request.method} {request.url.path}")

    client._client.event_hooks["request"].append(record)
    return sent


async def _three_runs(prefect_api_url: str, *, answer: bool) -> tuple[str, list[_Attempt]]:
    """Run a probe flow in-process as the worker does: claimed (Pending) with the worker's
    client, then handed to the engine. It fails twice and is retried as Prefect's "Retry"
    does; the first retry hands the engine the stale FlowRun of the first run, as a worker
    would that held an announcement while another worker ran the run."""
    async with (
        PrefectClient(api=prefect_api_url) as client,
        PrefectClient(api=prefect_api_url) as plain,
    ):
        engine_patches.skip_policy_updates(client)
        if answer:
            engine_patches.answer_running_rereads(client)
            engine_patches.answer_running_rereads(client)  # idempotent
        sent = _requests_sent_by(client)
        attempts: list[_Attempt] = []

        @flow(name="engine-reread-probe", persist_result=False)
        async def probe() -> str:
            context = FlowRunContext.get()
            assert context is not None and context.flow_run is not None
            assert context.client is client  # the engine's client is the worker's
            run_id = context.flow_run.id
            attempt = _Attempt(
                context.flow_run.model_copy(deep=True), await plain.read_flow_run(run_id), [*sent]
            )
            attempts.append(attempt)
            before = len(sent)
            await client.read_flow_run(run_id)
            attempt.sent_by_body = sent[before:]
            if len(attempts) < 3:
                raise ValueError("this run fails")
            return "done"

        async def claim_and_run(flow_run: FlowRun) -> Any:
            claimed = await propose_state(client, Pending(), flow_run_id=flow_run.id)
            assert claimed.is_pending()
            sent.clear()
            current = engine_patches.claimed_as_seen(flow_run, claimed)
            with (
                engine_patches.shared_client(client),
                engine_patches.handing_over(flow_run, current=current),
            ):
                return await run_flow_async(probe, flow_run=flow_run, return_type="state")

        async def retry() -> FlowRun:
            """Prefect's "Retry"; returns the run as the worker's poll then sees it."""
            await plain.set_flow_run_state(created.id, AwaitingRetry(), force=True)
            return await plain.read_flow_run(created.id)

        created = await plain.create_flow_run(probe, state=Scheduled())
        # The run as announced, kept aside: the engine changes the object it is handed.
        announced = created.model_copy(deep=True)
        assert (await claim_and_run(created)).is_failed()
        assert (await retry()).run_count == 1
        # Stale: still Scheduled, run_count 0, but not the Scheduled state the claim left.
        assert (await claim_and_run(announced)).is_failed()
        polled = await retry()
        assert polled.run_count == 2
        assert (await claim_and_run(polled)).is_completed()
        return str(created.id), attempts


def _run(system: System, *, answer: bool) -> tuple[str, list[_Attempt]]:
    settings = {PREFECT_API_URL: system.prefect_api_url, PREFECT_LOGGING_TO_API_ENABLED: False}
    with temporary_settings(updates=settings):
        return asyncio.run(_three_runs(system.prefect_api_url, answer=answer))


def test_the_flow_body_sees_the_run_the_server_has_without_the_engine_reading_it(
    system: System,
) -> None:
    flow_run_id, attempts = _run(system, answer=True)
    read = f"GET /api/flow_runs/{flow_run_id}"
    assert len(attempts) == 3
    for run_count, attempt in enumerate(attempts, start=1):
        engine, server = attempt.engine_copy, attempt.server_copy
        assert engine.run_count == server.run_count == run_count
        assert engine.state is not None and server.state is not None
        assert (engine.state_id, engine.state_type, engine.state_name) == (
            server.state_id,
            server.state_type,
            server.state_name,
        )
        assert engine.state.id == server.state.id == server.state_id
        assert engine.state.is_running() and engine.state.name == server.state.name
        assert engine.start_time == server.start_time is not None
        assert engine.model_dump(exclude=BOOKKEEPING) == server.model_dump(exclude=BOOKKEEPING)
        assert f"POST /api/flow_runs/{flow_run_id}/set_state" in attempt.sent
        # Only the engine's first read is answered: any other goes to the server.
        assert attempt.sent_by_body == [read]
    # The engine never read back a run it was handed as the server had it at the claim...
    assert read not in attempts[0].sent and read not in attempts[2].sent
    # ...and did read back the stale one (handed over with run_count 0 on its second run).
    assert read in attempts[1].sent
    # Started once: the retries keep the first start time.
    assert {attempt.engine_copy.start_time for attempt in attempts} == {
        attempts[0].server_copy.start_time
    }


def test_without_the_patch_the_engine_reads_the_run_back(system: System) -> None:
    # The other side of the test above: the same runs on a client without the patch do send
    # the read, so that test fails if the patch stops answering it.
    flow_run_id, attempts = _run(system, answer=False)
    assert len(attempts) == 3
    for run_count, attempt in enumerate(attempts, start=1):
        assert f"GET /api/flow_runs/{flow_run_id}" in attempt.sent
        assert attempt.engine_copy.run_count == attempt.server_copy.run_count == run_count


async def _claimed_in_row(prefect_api_url: str) -> tuple[str, _Attempt]:
    """A run the worker claimed in its execution row (an API-started run): no Pending, the
    engine moves it from Scheduled straight to Running, handed over as current."""
    async with (
        PrefectClient(api=prefect_api_url) as client,
        PrefectClient(api=prefect_api_url) as plain,
    ):
        engine_patches.skip_policy_updates(client)
        engine_patches.answer_running_rereads(client)
        sent = _requests_sent_by(client)
        seen: list[_Attempt] = []

        @flow(name="engine-reread-row-claim", persist_result=False)
        async def probe() -> None:
            context = FlowRunContext.get()
            assert context is not None and context.flow_run is not None
            run_id = context.flow_run.id
            engine_copy = context.flow_run.model_copy(deep=True)
            seen.append(_Attempt(engine_copy, await plain.read_flow_run(run_id), [*sent]))

        created = await plain.create_flow_run(probe, state=Scheduled())
        with (
            engine_patches.shared_client(client),
            engine_patches.handing_over(created, current=engine_patches.claimed_as_seen(created)),
        ):
            state = await run_flow_async(probe, flow_run=created, return_type="state")
        assert isinstance(state, State) and state.is_completed()
        states = await plain.read_flow_run_states(created.id)
        assert [s.type.value for s in states] == ["SCHEDULED", "RUNNING", "COMPLETED"]
        return str(created.id), seen[0]


def test_a_run_claimed_in_its_row_goes_straight_to_running_without_a_read_back(
    system: System,
) -> None:
    settings = {PREFECT_API_URL: system.prefect_api_url, PREFECT_LOGGING_TO_API_ENABLED: False}
    with temporary_settings(updates=settings):
        flow_run_id, attempt = asyncio.run(_claimed_in_row(system.prefect_api_url))
    engine, server = attempt.engine_copy, attempt.server_copy
    assert engine.run_count == server.run_count == 1
    assert engine.state_id == server.state_id and engine.start_time == server.start_time
    assert engine.model_dump(exclude=BOOKKEEPING) == server.model_dump(exclude=BOOKKEEPING)
    assert f"GET /api/flow_runs/{flow_run_id}" not in attempt.sent
