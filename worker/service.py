"""The taskflows worker: a long-lived process that runs flow runs of the `taskflows` pool
in-process, as asyncio tasks.

A new Python process per run (what stock Prefect workers do) costs 1-3 s and ~90 MB; here a
run costs an asyncio task. The worker:

- claims a run with a queued execution (every run the API starts) in the execution's row,
  and any other scheduled run by proposing Pending; only a won claim runs, so two workers
  never execute the same run;
- claims a run the API announces straight from the NOTIFY payload (the whole flow run), with
  no Prefect poll per launch; polls the work pool slowly as a safety net for scheduled runs,
  runs created in the Prefect UI and announcements it missed;
- heartbeats, so the Prefect UI shows it online;
- bounds its concurrency (`WORKER_CONCURRENCY`);
- stops on SIGINT/SIGTERM: it stops claiming, cancels the runs in flight (their executions
  end `cancelled`) and exits.

Run it with `python -m worker`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import sys
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg
from prefect.client.orchestration import PrefectClient, get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterId,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.exceptions import Abort
from prefect.flow_engine import run_flow_async
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.states import Cancelled, Pending
from prefect.utilities.engine import propose_state

from deployments.prefect_flows import FlowsByRun
from deployments.scheduled_prompts import sync_all_scheduled_prompts
from deployments.sync import ensure_work_pool, sync_all
from flows import run_control
from flows.channels import EXECUTION_CHANGES, WORKER_WAKEUP
from flows.execution_store import Claim
from flows.retrying import Backoff
from flows.runtime import close_runtime, get_runtime
from flows.scheduled_prompt_store import ScheduledPromptStore
from flows.settings import Settings, get_settings
from flows.task_flow_store import TaskFlowStore
from worker import engine_patches
from worker.run_logs import drop_completed_task_records, plain_console
from worker.warm_up import warm_up

logger = logging.getLogger("taskflows.worker")

HEARTBEAT_S = 10.0
# How often to ask Prefect for runs cancelled in its UI (API cancels arrive by NOTIFY).
CANCEL_CHECK_S = 2.0
# How long in-flight runs get to wind down on SIGTERM before they are cut off.
STOP_GRACE_S = 10.0
STOP_REASON = "The worker stopped while the run was in flight; retry it to resume."
# Waits before listening again after the LISTEN connection was lost, and before polling
# again after a failed poll: quick after one failure, backing off while the database or
# Prefect stays away (so a restarting server is not hammered), reset by a success.
RETRY_BACKOFF = Backoff(base_s=0.5, cap_s=10.0)
# How the worker's LISTEN connection shows in pg_stat_activity (with the worker's pid).
LISTEN_APPLICATION_NAME = "taskflows-worker-listen"


class Worker:
    """Serves one work pool until `stop()` is called."""

    def __init__(self, settings: Settings, *, name: str | None = None) -> None:
        self.settings = settings
        # Host and pid: an operator can tell which process holds an execution's lease.
        self.name = name or f"taskflows-{socket.gethostname()}-{os.getpid()}"
        self._wake = asyncio.Event()
        # Flow runs announced by NOTIFY, claimed without asking Prefect which runs are due.
        self._announced: dict[UUID, FlowRun] = {}
        # Whether the next wake-up must also poll the work pool (start, reconnect, timeout,
        # an announcement without the flow run, or runs left behind when all slots were busy).
        self._poll_due = True
        self._stopping = asyncio.Event()
        self._slots = asyncio.Semaphore(settings.worker_concurrency)
        self._runs: dict[UUID, asyncio.Task[None]] = {}
        self._client: PrefectClient | None = None
        self._flows = FlowsByRun()  # each task flow is its own Prefect flow

    @property
    def client(self) -> PrefectClient:
        assert self._client is not None, "the worker is not running"
        return self._client

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    async def serve(self) -> None:
        engine_patches.apply()
        drop_completed_task_records()
        plain_console()
        run_control.set_worker_name(self.name)
        runtime = await get_runtime()
        # Built once, here, on the event loop before any run (see engine_patches).
        with engine_patches.shared_sync_client():
            async with get_client() as client:
                engine_patches.skip_policy_updates(client)
                engine_patches.answer_running_rereads(client)
                self._client = client
                try:
                    await self._serve_with(client, runtime.pool)
                finally:
                    self._client = None
        await close_runtime()

    async def _serve_with(self, client: PrefectClient, pool: Any) -> None:
        await ensure_work_pool(client, self.settings.work_pool)
        await self._heartbeat()
        # In the background: a large install has many deployments to check, and runs must
        # not wait for that.
        loops = [
            asyncio.create_task(self._sync_deployments(pool), name="sync"),
            asyncio.create_task(self._listen(), name="listen"),
            asyncio.create_task(self._every(HEARTBEAT_S, self._heartbeat), name="heartbeat"),
            asyncio.create_task(
                self._every(CANCEL_CHECK_S, self._check_cancellations), name="cancel"
            ),
            asyncio.create_task(
                self._every(self.settings.lease_renew_s, self._renew_leases), name="leases"
            ),
        ]
        logger.info("Worker %r serving work pool %r", self.name, self.settings.work_pool)
        try:
            await self._claim_loop()
        finally:
            for loop in loops:
                loop.cancel()
            await asyncio.gather(*loops, return_exceptions=True)
            await self._wind_down()

    async def _sync_deployments(self, pool: Any) -> None:
        try:  # first what the first run would wait for, then the (slower) sync
            await warm_up()
        except Exception:
            logger.exception("Could not warm up; the first run loads what it needs")
        try:
            summary = await sync_all(self.client, TaskFlowStore(pool))
            logger.info("Deployments in sync: %s", summary)
        except Exception:
            logger.exception("Could not sync deployments at start-up; will run anyway")
        try:  # rows of a database taken over from the old system get their schedules here
            summary = await sync_all_scheduled_prompts(self.client, ScheduledPromptStore(pool))
            logger.info("Scheduled prompts in sync: %s", summary)
        except Exception:
            logger.exception("Could not sync scheduled prompts at start-up; will run anyway")

    async def _every(self, period: float, action: Any) -> None:
        while not self._stopping.is_set():
            await asyncio.sleep(period)
            try:
                await action()
            except Exception as exc:  # keep serving; the next round may succeed
                logger.warning("%s failed: %r", getattr(action, "__name__", action), exc)

    async def _heartbeat(self) -> None:
        await self.client.send_worker_heartbeat(
            work_pool_name=self.settings.work_pool,
            worker_name=self.name,
            heartbeat_interval_seconds=HEARTBEAT_S,
        )

    async def _renew_leases(self) -> None:
        runtime = await get_runtime()
        ids = [run.execution_id for run in run_control.in_flight() if run.execution_id]
        await runtime.executions.renew_leases(ids, self.name)

    async def _listen(self) -> None:
        """Wake the claim loop on new flow runs; stop runs whose execution was cancelled."""
        url = get_settings().resolved_database_url()
        failures = 0
        while not self._stopping.is_set():
            try:
                async with await psycopg.AsyncConnection.connect(
                    url,
                    autocommit=True,
                    application_name=f"{LISTEN_APPLICATION_NAME}-{os.getpid()}",
                    connect_timeout=10,
                ) as conn:
                    await conn.execute(f"LISTEN {WORKER_WAKEUP}")
                    await conn.execute(f"LISTEN {EXECUTION_CHANGES}")
                    if failures:
                        logger.info("Listening again after %d failed attempt(s)", failures)
                    failures = 0
                    self._poll_due = True  # anything announced while we were away
                    self._wake.set()
                    async for notify in conn.notifies():
                        if notify.channel == WORKER_WAKEUP:
                            self._on_announcement(notify.payload)
                        else:
                            self._on_execution_change(notify.payload)
            except psycopg.Error as exc:
                delay = RETRY_BACKOFF.delay(failures)
                failures += 1
                logger.warning("LISTEN connection lost (%r); reconnecting in %.1f s", exc, delay)
                await self._pause(delay)

    async def _pause(self, seconds: float) -> None:
        """Wait `seconds`, or less when the worker is told to stop meanwhile."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)

    def _on_announcement(self, payload: str) -> None:
        """A new flow run: keep it to claim directly, or poll when the payload is only an id
        (a flow run too large for a NOTIFY)."""
        try:
            flow_run = FlowRun.model_validate_json(payload)
        except ValueError:
            self._poll_due = True
        else:
            self._announced[flow_run.id] = flow_run
        self._wake.set()

    def _on_execution_change(self, payload: str) -> None:
        try:
            change = json.loads(payload)
        except ValueError:
            return
        if change.get("status") == "cancelled":
            run = run_control.by_execution(int(change["id"]))
            if run is not None:
                run_control.request_cancel(run.flow_run_id)

    async def _claim_loop(self) -> None:
        failed_polls = 0
        while not self._stopping.is_set():
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self.settings.worker_poll_s)
            except TimeoutError:
                self._poll_due = True
            self._wake.clear()
            if self._stopping.is_set():
                return
            try:
                if await self._claim_announced_runs() and self._poll_due:
                    self._poll_due = False
                    await self._claim_scheduled_runs()
            except Exception as exc:
                self._poll_due = True
                delay = RETRY_BACKOFF.delay(failed_polls)
                failed_polls += 1
                logger.warning("Polling for flow runs failed (%r); again in %.1f s", exc, delay)
                await self._pause(delay)
            else:
                failed_polls = 0

    async def _claim_announced_runs(self) -> bool:
        """Claim the runs announced by NOTIFY; False when the slots ran out first."""
        while self._announced:
            flow_run_id = next(iter(self._announced))
            if not await self._start(self._announced[flow_run_id], announced=True):
                return False
            self._announced.pop(flow_run_id, None)
        return True

    async def _claim_scheduled_runs(self) -> None:
        responses = await self.client.get_scheduled_flow_runs_for_work_pool(
            work_pool_name=self.settings.work_pool,
            scheduled_before=datetime.now(UTC) + timedelta(seconds=1),
        )
        for response in responses:
            if not await self._start(response.flow_run, announced=False):
                self._poll_due = True  # come back for the rest when a slot frees up
                return

    async def _start(self, flow_run: FlowRun, *, announced: bool) -> bool:
        """Claim `flow_run` and run it in the background; False when every slot is busy (the
        caller keeps it for later; `_execute` wakes the loop when a slot frees up)."""
        if flow_run.id in self._runs:
            return True
        if self._slots.locked():
            return False
        await self._slots.acquire()
        try:
            claimed = await self._claim(flow_run, announced=announced)
        except BaseException:
            self._slots.release()
            raise
        if claimed is None:
            self._slots.release()
            return True  # another worker has it, or it was cancelled: nothing to keep
        task = asyncio.create_task(
            self._execute(flow_run, current=claimed), name=f"flow-run-{flow_run.id}"
        )
        self._runs[flow_run.id] = task
        return True

    async def _claim(self, flow_run: FlowRun, *, announced: bool) -> bool | None:
        """Take the run for this worker alone: None when it was not taken, else whether
        `flow_run` is still the run as the server has it (`engine_patches.claimed_as_seen`).

        A run with a queued execution (every run the API starts) is claimed in our own
        table, and the engine then moves its flow run from Scheduled straight to Running:
        one state proposal per run less for the Prefect server (its most expensive request,
        see README "Performance"). Any other run (started in the Prefect UI or by a
        schedule, or a Prefect retry of an ended execution) is claimed by proposing
        Pending, which the server accepts for exactly one worker.

        An announced run (the API's NOTIFY) always has a queued execution until someone
        starts or cancels it. When it has none, the announcement is stale (another worker
        ran it while this one's slots were busy, or it was cancelled): proposing Pending
        would be accepted even on a finished run whose result is not stored, and run it
        again, so it is dropped.
        """
        runtime = await get_runtime()
        claim = await runtime.executions.claim_queued(
            flow_run.id, worker_name=self.name, lease_expiry_s=self.settings.lease_expiry_s
        )
        if claim is Claim.CLAIMED:
            return engine_patches.claimed_as_seen(flow_run)
        if claim is Claim.TAKEN or announced:
            return None
        try:
            state = await propose_state(self.client, Pending(), flow_run_id=flow_run.id)
        except Abort:
            return None
        return engine_patches.claimed_as_seen(flow_run, state) if state.is_pending() else None

    async def _execute(self, flow_run: FlowRun, *, current: bool) -> None:
        try:
            flow = await self._flows.flow_for(self.client, flow_run)
            with (
                engine_patches.shared_client(self.client),
                engine_patches.handing_over(flow_run, current=current),
            ):
                await run_flow_async(
                    flow,
                    flow_run=flow_run,
                    parameters=flow_run.parameters,
                    return_type="state",
                )
        except asyncio.CancelledError:
            # Only when a run ignored its cancel request past the grace period.
            await self._force_cancelled(flow_run.id)
        except Exception:
            logger.exception("Flow run %s ended with an engine error", flow_run.id)
        finally:
            self._runs.pop(flow_run.id, None)
            self._slots.release()
            self._wake.set()

    async def _check_cancellations(self) -> None:
        """Stop the runs in flight that someone marked Cancelling in Prefect (its UI)."""
        if not self._runs:
            return
        cancelling = await self.client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                id=FlowRunFilterId(any_=list(self._runs)),
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.CANCELLING])),
            )
        )
        for flow_run in cancelling:
            run_control.request_cancel(flow_run.id)

    async def _wind_down(self) -> None:
        """Ask every run in flight to stop, give them a moment, then cut them off."""
        for flow_run_id in list(self._runs):
            run_control.request_cancel(flow_run_id, STOP_REASON)
        if not self._runs:
            return
        _, late = await asyncio.wait(list(self._runs.values()), timeout=STOP_GRACE_S)
        runtime = await get_runtime()
        for run in run_control.in_flight():
            # End the execution before cutting the task off: Prefect's engine then reports
            # the run as crashed, and the crash hook must find the execution already ended.
            if run.execution_id is not None:
                await runtime.executions.complete_execution(
                    run.execution_id, "cancelled", STOP_REASON
                )
        for task in late:
            task.cancel()
        if late:
            await asyncio.gather(*late, return_exceptions=True)

    async def _force_cancelled(self, flow_run_id: UUID) -> None:
        try:
            await self.client.set_flow_run_state(
                flow_run_id, Cancelled(message=STOP_REASON), force=True
            )
        except Exception as exc:
            logger.warning("Could not mark flow run %s cancelled: %r", flow_run_id, exc)


async def main() -> None:
    # Prefect's logging config owns the root handler (WARNING); let our own INFO lines through.
    for name in ("taskflows", "deployments", "flows"):
        logging.getLogger(name).setLevel(logging.INFO)
    settings = get_settings()
    # Like the API: without PREFECT_API_URL, the server `make up` starts (never a hidden
    # temporary server of this process's own).
    api_url = PREFECT_API_URL.value() or settings.resolved_prefect_api_url()
    with temporary_settings(updates={PREFECT_API_URL: api_url}):
        async with get_client() as client:
            problem = await client.api_healthcheck()
        if problem is not None:
            print(
                f"taskflows worker: the Prefect API at {api_url} does not answer "
                "(start it with `make up`, or set PREFECT_API_URL).",
                file=sys.stderr,
            )
            raise SystemExit(1)
        worker = Worker(settings)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, worker.stop)
        await worker.serve()
    logger.info("Worker %r stopped", worker.name)
