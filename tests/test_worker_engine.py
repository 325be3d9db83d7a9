"""The worker's changes to Prefect's engine: an unverified Prefect is a warning naming what is
unverified, a patched symbol Prefect no longer has is an error (and a failing test here), the
patched engine leaves SIGTERM to the worker (the behaviour itself: tests/test_crashes.py), the
task flow never asks the server for its default result storage, a task run's first Pending
event and the engine's no-retry policy PATCH are not sent, flow-run reads go to the server
but for the engine's re-read of a run that just entered Running, "Finished in state
Completed()" task records are dropped, and progress artifacts are throttled. No server
needed."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import logging
import signal
import uuid
from typing import Any

import httpx
import prefect
import prefect.artifacts
import prefect.flow_engine
import prefect.results
import prefect.task_engine
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import FlowRun, FlowRunPolicy, TaskRun
from prefect.logging.handlers import PrefectConsoleHandler
from prefect.settings import (
    PREFECT_API_URL,
    PREFECT_CLIENT_SERVER_VERSION_CHECK_ENABLED,
    temporary_settings,
)
from prefect.states import Pending, Running

from flows import artifacts as artifacts_module
from flows.artifacts import RunArtifacts
from flows.taskflow import run_task_flow
from worker import engine_patches
from worker.run_logs import CompletedTaskRecordsDropped, drop_completed_task_records, plain_console


def test_an_unverified_prefect_is_a_warning_that_names_what_is_unverified(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(engine_patches, "_applied", False)
    monkeypatch.setattr(prefect, "__version__", "3.10.0")
    with caplog.at_level(logging.WARNING, logger="taskflows.worker"):
        engine_patches.apply()
    text = caplog.text
    assert "found 3.10.0" in text
    assert "SIGTERM handling per run" in text and "suspension observer" in text
    assert prefect.flow_engine.capture_sigterm is not None  # still patched


@pytest.mark.parametrize("version", ["3.9.1", "3.9.7"])
def test_verified_prefect_releases_give_no_warning(version: str) -> None:
    assert engine_patches.unverified_warning(version) is None


@pytest.mark.parametrize("version", ["3.9.0", "3.10.0", "4.0.0", "not-a-version"])
def test_releases_outside_3_9_1_to_3_9_x_are_unverified(version: str) -> None:
    warning = engine_patches.unverified_warning(version)
    assert warning is not None and version in warning


def test_every_patched_engine_symbol_exists_and_is_used_by_the_engine() -> None:
    # Fails the day Prefect renames or drops what the worker replaces: the patches would
    # silently stop applying.
    assert engine_patches.missing_symbols() == []
    for module_name, attribute in engine_patches.PATCHED_SYMBOLS:
        assert module_name in ("prefect.flow_engine", "prefect.task_engine")
        engine_source = inspect.getsource(importlib.import_module(module_name))
        assert f"{attribute}(" in engine_source, f"{module_name} no longer calls {attribute}"


def test_a_missing_patched_symbol_stops_the_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine_patches, "_applied", False)
    monkeypatch.delattr(prefect.flow_engine, "observe_flow_run_suspension")
    with pytest.raises(engine_patches.EnginePatchError, match="observe_flow_run_suspension"):
        engine_patches.apply()


def test_the_worker_client_answers_only_the_engines_no_retry_policy_update_itself() -> None:
    # Nothing listens on port 9: a request that reaches the network fails to connect.
    with temporary_settings(updates={PREFECT_API_URL: "http://127.0.0.1:9/api"}):

        async def updates() -> None:
            async with get_client() as client:
                engine_patches.skip_policy_updates(client)
                engine_patches.skip_policy_updates(client)  # idempotent
                run_id = uuid.uuid4()
                answered = await client.update_flow_run(
                    flow_run_id=run_id,
                    flow_version="abc",
                    empirical_policy=FlowRunPolicy(retries=0),
                )
                assert answered.status_code == 204
                with pytest.raises(httpx.ConnectError):
                    await client.update_flow_run(run_id, name="renamed")
                with pytest.raises(httpx.ConnectError):  # a policy with retries is sent
                    await client.update_flow_run(
                        flow_run_id=run_id,
                        flow_version="abc",
                        empirical_policy=FlowRunPolicy(retries=2),
                    )

        asyncio.run(updates())


def test_the_worker_client_sends_every_read_without_an_accepted_running_state() -> None:
    # Only the engine's read right after the server accepted Running for the run handed
    # over is answered locally (against the real server: tests/test_engine_reread.py).
    with temporary_settings(updates={PREFECT_API_URL: "http://127.0.0.1:9/api"}):

        async def reads() -> None:
            async with get_client() as client:
                engine_patches.answer_running_rereads(client)
                read_flow_run = client.read_flow_run
                engine_patches.answer_running_rereads(client)  # idempotent: wrapped once
                assert client.read_flow_run is read_flow_run
                handed = FlowRun(flow_id=uuid.uuid4(), name="handed-over")
                with pytest.raises(httpx.ConnectError):  # nothing handed over
                    await client.read_flow_run(handed.id)
                with engine_patches.handing_over(handed, current=True):
                    with pytest.raises(httpx.ConnectError):  # no Running accepted yet
                        await client.read_flow_run(handed.id)
                    with pytest.raises(httpx.ConnectError):  # the server never answered
                        await client.set_flow_run_state(handed.id, Running())
                    with pytest.raises(httpx.ConnectError):
                        await client.read_flow_run(handed.id)

        asyncio.run(reads())


def test_runs_resolve_their_result_storage_without_building_a_client_each() -> None:
    # The engine resolves the flow's result storage at the start of every run, and that
    # builds a synchronous Prefect client (an SSL context: ~15 ms) unless one is in context.
    settings = {
        PREFECT_API_URL: "http://127.0.0.1:9/api",
        PREFECT_CLIENT_SERVER_VERSION_CHECK_ENABLED: False,
    }
    with temporary_settings(updates=settings), engine_patches.shared_sync_client():
        shared = get_client(sync_client=True)

        async def a_run() -> Any:
            update_for_flow: Any = prefect.results.ResultStore().update_for_flow
            update_for_flow(run_task_flow, _sync=True)
            return get_client(sync_client=True)

        # A flow run is an asyncio task of the worker: it inherits the context.
        assert asyncio.run(a_run()) is shared


def test_a_task_runs_first_pending_event_is_not_sent() -> None:
    engine_patches.apply()
    task_run = TaskRun(flow_run_id=uuid.uuid4(), task_key="prompt", dynamic_key="0", name="p")
    sent = prefect.task_engine.emit_task_run_state_change_event(
        task_run=task_run, initial_state=None, validated_state=Pending()
    )
    assert sent is None  # and the Running event that follows it names no leader


def test_a_patched_engine_installs_no_sigterm_handler() -> None:
    engine_patches.apply()
    before = signal.getsignal(signal.SIGTERM)
    with prefect.flow_engine.capture_sigterm():
        assert signal.getsignal(signal.SIGTERM) is before
    with prefect.flow_engine.observe_flow_run_suspension(uuid.uuid4(), None):  # type: ignore[arg-type]
        pass  # no observer thread, nothing to wait for


def test_the_task_flow_never_asks_the_server_for_its_result_storage(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_server(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("asked the server for its default result storage")

    monkeypatch.setattr(prefect.results, "_read_server_default_result_storage_block_id", no_server)
    monkeypatch.setattr(prefect.results, "_aread_server_default_result_storage_block_id", no_server)
    # An API nobody listens on: any request would fail (and no temporary server starts).
    with temporary_settings(updates={PREFECT_API_URL: "http://127.0.0.1:9/api"}):
        # What the engine calls at the start of every run (synchronously, on its event loop).
        update_for_flow: Any = prefect.results.ResultStore().update_for_flow
        store = update_for_flow(run_task_flow, _sync=True)
        assert store.result_storage is not None
        store = asyncio.run(prefect.results.ResultStore().aupdate_for_flow(run_task_flow))
        assert run_task_flow.persist_result is False


def _record(name: str, level: int, message: str) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, message, (), None)


def test_only_completed_task_records_are_dropped() -> None:
    drop_completed_task_records()
    task_runs = logging.getLogger("prefect.task_runs")
    assert sum(isinstance(f, CompletedTaskRecordsDropped) for f in task_runs.filters) == 1
    completed = _record("prefect.task_runs", logging.INFO, "Finished in state Completed()")
    assert not task_runs.filter(completed)
    failed = _record("prefect.task_runs", logging.ERROR, "Finished in state Failed('boom')")
    assert task_runs.filter(failed)
    retry = _record(
        "prefect.task_runs", logging.INFO, "Task run failed with exception: x - Retry 1/3"
    )
    assert task_runs.filter(retry)
    flow_runs = logging.getLogger("prefect.flow_runs")
    assert flow_runs.filter(
        _record("prefect.flow_runs", logging.INFO, "Finished in state Completed()")
    )
    drop_completed_task_records()  # idempotent: still one filter
    assert sum(isinstance(f, CompletedTaskRecordsDropped) for f in task_runs.filters) == 1


def test_the_console_prints_the_same_lines_without_rich() -> None:
    # Prefect's logging config (set up when prefect is imported) prints every record through
    # one console handler on the root logger; flow-run records propagate to it.
    root = logging.getLogger()
    before = [h for h in root.handlers if isinstance(h, PrefectConsoleHandler)]
    assert before, "Prefect's logging config has no console handler any more"
    record = _record("prefect.flow_runs", logging.INFO, "Beginning flow run 'x'")
    record.flow_run_name = "hello #1"
    line = before[0].format(record)
    plain_console()
    plain_console()  # idempotent
    for logger in [root, *logging.Logger.manager.loggerDict.values()]:
        if isinstance(logger, logging.Logger):
            assert not any(isinstance(h, PrefectConsoleHandler) for h in logger.handlers)
    after = [h for h in root.handlers if type(h) is logging.StreamHandler]
    assert len(after) == len(before) and after[0].format(record) == line
    assert "Flow run 'hello #1' - Beginning flow run 'x'" in line


def test_progress_artifact_writes_are_throttled_and_the_last_count_is_written(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    writes: list[float] = []

    async def create(progress: float, description: str) -> uuid.UUID:
        writes.append(progress)
        return uuid.uuid4()

    async def update(artifact_id: uuid.UUID, progress: float, description: str) -> None:
        writes.append(progress)

    async def table(**kwargs: Any) -> uuid.UUID:
        return uuid.uuid4()

    monkeypatch.setattr(artifacts_module, "acreate_progress_artifact", create)
    monkeypatch.setattr(artifacts_module, "aupdate_progress_artifact", update)
    monkeypatch.setattr(artifacts_module, "acreate_table_artifact", table)

    async def short_run() -> None:
        run = RunArtifacts(call_name="short", total=5, progress_every_s=30)
        for done in range(6):
            run.progress(done)
            await asyncio.sleep(0)
        await run.finish([])

    asyncio.run(short_run())
    assert writes == []  # a run shorter than the interval has only its results table

    writes.clear()

    async def long_run() -> None:
        run = RunArtifacts(call_name="long", total=4, progress_every_s=0.05)
        run.progress(0)
        for done in range(1, 5):
            # Wait until the throttled writer caught up with the previous count.
            for _ in range(200):
                if writes and writes[-1] == 25.0 * (done - 1):
                    break
                await asyncio.sleep(0.01)
            run.progress(done)
        await run.finish([])

    asyncio.run(long_run())
    assert writes == [0.0, 25.0, 50.0, 75.0, 100.0]
