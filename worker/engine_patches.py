"""The one place where taskflows bends Prefect's engine to run many flow runs in one process.

Prefect assumes one flow run per process. taskflows is verified against Prefect 3.9.x
(pyproject.toml allows `>=3.9.1,<3.10`; uv.lock pins the exact release the tests ran). Each
change below is checked by tests (tests/test_crashes.py, tests/test_worker_engine.py, and
every test that runs a flow through the worker) and its effect measured by `make bench`
(see README "Performance"):

- `capture_sigterm` installs a process-wide SIGTERM handler per run, so a SIGTERM meant for
  the worker would become a crash of whichever run installed it last, and the worker
  could not stop gracefully. The worker owns its signals; runs must not touch them.
- `observe_flow_run_suspension` starts, for every run of a deployment, a thread with its
  own event loop, Prefect client and events websocket, and joins it at the end (up to
  0.2 s with the worker's event loop blocked). Task flows never suspend or pause.

- `emit_task_run_state_change_event` sends an event for every state of every task run:
  Pending, Running, Completed. The Prefect server turns each into a task-run row update and
  a state row, and evaluates automations against it. A prompt's Pending state lasts
  microseconds and says nothing the Running event does not (that event carries the whole
  task run, and names Pending as its initial state), so the first Pending event of a task
  run is not sent: a third fewer events per prompt. The task run, its Running and final
  states, its timing and the run graph are all still recorded (tests/test_prefect_native.py).

The worker's Prefect client also skips one request per run (`skip_policy_updates`): the
engine PATCHes every flow run it starts with the flow's version and its retry policy. A task
flow has no flow-level retries (Prefect's "Retry" button works from the run's state, not its
policy), so the policy it would write means the same as the one the run already has; the
only thing lost is the "Flow version" field in the Prefect UI.

It also answers one read per run itself (`answer_running_rereads`): right after the server
accepts a flow run's Running state, the engine reads the whole flow run back
(`setup_run_context`: one GET /flow_runs/{id} per run, about 8 % of the Prefect server's CPU
per run; tests/test_engine_reread.py). All that read can bring that the engine does not
already hold is what the server's Running transition wrote
(prefect/server/orchestration/global_policy.py): the state (the engine holds the accepted
one), state_id/type/name, run_count + 1 (the flow body reads it: `run_count > 1` is
Prefect's "Retry"), start_time (set when it was None), end_time and
next_scheduled_start_time (None while running). The worker hands the engine the FlowRun it
claimed (`handing_over`); the engine keeps that same object, and the client builds the
read's answer from it. That FlowRun's run_count is the server's only if the run did not run
since the worker saw it (an announcement held while all slots were busy, and meanwhile run
by another worker, is stale), so the worker says whether it is current (`claimed_as_seen`):
it claimed the run's queued execution in its row (an API-started run that never ran:
worker/service.py `_claim`), or its claim (Pending) left the very Scheduled state the
handed FlowRun is in: the server copies that state's scheduled time into the Pending it
accepts. Otherwise, for a resumed pause (the server does not count that Running), and for
a second Running in one run, the engine gets the real read.
The answer differs from a real read only in the engine's in-memory copy, never on the
server, in fields neither the flow body nor the UI reads: `updated` (the row's last write),
`estimated_run_time` (a read adds the milliseconds since Running), `empirical_policy` (the
engine's copy has retries and retry_delay filled in from the flow where the server keeps
them unset when `skip_policy_updates` skipped the PATCH) and `flow_version` (when that PATCH
is sent, the server has the flow's version, the engine's copy the one the run was created
with).

The server's default result storage used to be a third patch (Prefect reads it with a
blocking HTTP request at the start of every run). The task flow now names its result
storage itself (`result_storage=` on the flow, Prefect's supported setting; see
flows/taskflow.py), so Prefect never asks the server.

The worker also runs every flow run inside one shared `AsyncClientContext` (see
`shared_client`), so runs reuse its Prefect client instead of building one each (a new
SSL context, CSRF token and TCP connection per run).

It also keeps one synchronous Prefect client for its whole life (`shared_sync_client`):
at the start of every flow run the engine resolves the flow's result storage with
`resolve_result_storage`, which builds a `SyncPrefectClient` first thing, whatever the
storage is: about 15 ms of CPU per run on this project's machine (mostly a new SSL
context), spent synchronously on the worker's event loop. With a sync client in the
context, `get_client(sync_client=True)` hands that one back instead.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import httpx
import prefect
import prefect.flow_engine
import prefect.task_engine
from packaging.version import InvalidVersion, Version
from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.objects import FlowRun, StateType, TaskRun
from prefect.client.schemas.responses import OrchestrationResult, SetStateStatus
from prefect.context import AsyncClientContext, SyncClientContext
from prefect.events import Event
from prefect.states import State

logger = logging.getLogger("taskflows.worker")

# The Prefect releases these patches were verified against: 3.9.1 and later 3.9 releases.
VERIFIED_SERIES = (3, 9)
VERIFIED_FROM = (3, 9, 1)
# Module and attribute of each engine symbol replaced below.
PATCHED_SYMBOLS = (
    ("prefect.flow_engine", "capture_sigterm"),
    ("prefect.flow_engine", "observe_flow_run_suspension"),
    ("prefect.task_engine", "emit_task_run_state_change_event"),
)
_applied = False


class EnginePatchError(RuntimeError):
    """The installed Prefect lacks a symbol taskflows replaces: the worker cannot run safely."""


@contextlib.contextmanager
def _no_suspension_observer(*args: Any, **kwargs: Any) -> Iterator[None]:
    yield


_emit_state_change = prefect.task_engine.emit_task_run_state_change_event


def _emit_unless_first_pending(
    task_run: TaskRun,
    initial_state: State[Any] | None,
    validated_state: State[Any],
    follows: Event | None = None,
) -> Event | None:
    """Prefect's task-run state event, except a task run's first (Pending) one. The engine
    passes the returned event as `follows` of the next: None makes the Running event a
    first event of its own, so the server's causal ordering does not wait for the Pending
    event that never comes."""
    if initial_state is None and validated_state.is_pending():
        return None
    return _emit_state_change(
        task_run=task_run,
        initial_state=initial_state,
        validated_state=validated_state,
        follows=follows,
    )


def _release(version: str) -> tuple[int, ...]:
    """`3.9.4` -> (3, 9, 4); () for a version string that does not parse."""
    try:
        return Version(version).release
    except InvalidVersion:
        return ()


def unverified_warning(version: str) -> str | None:
    """A sentence naming what is unverified when `version` is outside 3.9.1-3.9.x; else None."""
    release = _release(version)
    if release[:2] == VERIFIED_SERIES and release >= VERIFIED_FROM:
        return None
    return (
        f"taskflows' worker is verified against Prefect 3.9.x (>= 3.9.1), found {version}: "
        "unverified are the engine patches in worker/engine_patches.py (SIGTERM handling per "
        "run, the suspension observer thread), the shared Prefect client per run, the flow-run "
        "read answered locally after Running, and the task-run log filter "
        "(worker/run_logs.py). Run tests/test_worker_engine.py, tests/test_engine_reread.py "
        "and tests/test_crashes.py against this Prefect before relying on it."
    )


def missing_symbols() -> list[str]:
    """The patched engine symbols the installed Prefect does not have."""
    import importlib

    missing = []
    for module_name, attribute in PATCHED_SYMBOLS:
        module = importlib.import_module(module_name)
        if not hasattr(module, attribute):
            missing.append(f"{module_name}.{attribute}")
    return missing


def apply() -> None:
    """Patch the engine for in-process runs (idempotent).

    An unverified Prefect version is a warning (the patches may still hold); a patched
    symbol that no longer exists is an error, because the worker would then run with
    Prefect's per-process behaviour (a SIGTERM handler per run) without noticing.
    """
    global _applied
    if _applied:
        return
    warning = unverified_warning(prefect.__version__)
    if warning is not None:
        logger.warning(warning)
    missing = missing_symbols()
    if missing:
        raise EnginePatchError(
            f"Prefect {prefect.__version__} has no {', '.join(missing)}: the worker's engine "
            "patches (worker/engine_patches.py) must be re-done for this Prefect."
        )
    prefect.flow_engine.capture_sigterm = contextlib.nullcontext  # type: ignore[assignment]
    prefect.flow_engine.observe_flow_run_suspension = _no_suspension_observer
    prefect.task_engine.emit_task_run_state_change_event = _emit_unless_first_pending
    _applied = True


# What the engine's PATCH of a starting flow run sends (prefect/flow_engine.py,
# `initialize_run`): the flow's version and its retry policy, nothing else.
_ENGINE_POLICY_UPDATE = frozenset({"flow_version", "empirical_policy"})


def skip_policy_updates(client: PrefectClient) -> None:
    """Make `client` answer the engine's per-run policy PATCH itself when the policy asks
    for no retries (the run's stored policy, retries unset, means the same); every other
    flow-run update goes to the server (idempotent)."""
    if getattr(client, "_taskflows_skips_policy_updates", False):
        return
    update_flow_run = client.update_flow_run

    async def update_unless_redundant(flow_run_id: Any, **fields: Any) -> httpx.Response:
        policy = fields.get("empirical_policy")
        if set(fields) == _ENGINE_POLICY_UPDATE and policy is not None and not policy.retries:
            return httpx.Response(204)
        return await update_flow_run(flow_run_id, **fields)

    client.update_flow_run = update_unless_redundant  # type: ignore[method-assign,assignment]
    client._taskflows_skips_policy_updates = True  # type: ignore[attr-defined]


@dataclass
class _HandedOver:
    """The FlowRun object the worker handed the engine, and the Running state the server
    accepted for it that no read has been answered from yet."""

    flow_run: FlowRun
    current: bool  # the run as the server has it (`claimed_as_seen`)
    running: State[Any] | None = None  # the first read after it is answered locally
    answered: bool = False


# Per flow run: the worker runs each one in its own asyncio task, so each sees its own.
_handed_over: ContextVar[_HandedOver | None] = ContextVar("taskflows_handed_over", default=None)


def claimed_as_seen(flow_run: FlowRun, pending: State[Any] | None = None) -> bool:
    """Whether `flow_run`, as the worker saw it, is still the run as the server has it right
    after the worker's claim: it is in a Scheduled state, and the claim was made in the
    run's queued execution row (`pending` None: an API-started run that never ran) or is
    the Pending the server accepted from that very Scheduled state (the server copies its
    scheduled time into the Pending)."""
    state = flow_run.state
    if state is None or not state.is_scheduled():
        return False
    if pending is None:
        return True
    scheduled_time = state.state_details.scheduled_time
    return scheduled_time is not None and pending.state_details.scheduled_time == scheduled_time


@contextlib.contextmanager
def handing_over(flow_run: FlowRun, *, current: bool) -> Iterator[None]:
    """Run the block (the worker's `run_flow_async(flow, flow_run=flow_run, ...)`) with
    `flow_run` as the object the engine holds, for `answer_running_rereads`. The engine's
    read is answered from it only when it is `current`, the run as the server had it at the
    claim (`claimed_as_seen`); otherwise the engine gets the real read."""
    token = _handed_over.set(_HandedOver(flow_run, current))
    try:
        yield
    finally:
        _handed_over.reset(token)


def _for_run(flow_run_id: UUID | str) -> _HandedOver | None:
    handed = _handed_over.get()
    if handed is None or str(handed.flow_run.id) != str(flow_run_id):
        return None
    return handed


def _as_read_after_running(flow_run: FlowRun, running: State[Any]) -> FlowRun | None:
    """What GET /flow_runs/{id} returns right after the server accepted `running` for the
    run `flow_run` was before it (global_policy.py: SetRunStateType, SetRunStateName,
    SetStartTime, IncrementFlowRunCount, SetEndTime, SetNextScheduledStartTime); None when
    that is not certain."""
    if flow_run.empirical_policy.resuming:
        return None  # a resumed pause: the server does not count this Running
    start_time = flow_run.start_time or running.timestamp
    expected = flow_run.expected_start_time
    lateness = (
        start_time - expected
        if expected is not None and start_time > expected
        else datetime.timedelta(0)
    )
    # Shallow: the worker hands the object over and never reads it again, so the copy may
    # share its nested fields (parameters, policy, tags); a deep copy costs ~120 us per run.
    return flow_run.model_copy(
        update={
            "state": running,
            "state_id": running.id,
            "state_type": running.type,
            "state_name": running.name,
            "run_count": flow_run.run_count + 1,
            "start_time": start_time,
            "end_time": None,
            "next_scheduled_start_time": None,
            "estimated_start_time_delta": lateness,
            "estimated_run_time": flow_run.total_run_time,
        },
    )


def answer_running_rereads(client: PrefectClient) -> None:
    """Make `client` answer the engine's read of a flow run that just entered Running from
    the FlowRun handed to the engine (`handing_over`), instead of asking the server; every
    other read goes to the server (idempotent). See the module docstring."""
    if getattr(client, "_taskflows_answers_running_rereads", False):
        return
    set_flow_run_state = client.set_flow_run_state
    read_flow_run = client.read_flow_run

    async def set_state_noting_running(
        flow_run_id: UUID | str, state: State[Any], force: bool = False
    ) -> OrchestrationResult[Any]:
        result: OrchestrationResult[Any] = await set_flow_run_state(flow_run_id, state, force=force)
        accepted = result.state if result.status == SetStateStatus.ACCEPT else None
        handed = _for_run(flow_run_id)
        if handed is None:
            return result
        handed.running = None  # any other state of the run: its read goes to the server
        # Only the run's first Running: after it the engine holds the answer, not the handed
        # object, and an in-process retry rewrites the run's policy on the server. A stale
        # handed FlowRun (not `current`: an announcement held while another worker ran the
        # run, and it was retried) has a stale run_count, so its read goes to the server.
        if (
            accepted is not None
            and accepted.type == StateType.RUNNING
            and handed.current
            and not handed.answered
        ):
            handed.running = accepted
        return result

    async def read_answering_running(flow_run_id: UUID) -> FlowRun:
        handed = _for_run(flow_run_id)
        if handed is not None and handed.running is not None:
            running, handed.running = handed.running, None
            handed.answered = True
            answer = _as_read_after_running(handed.flow_run, running)
            if answer is not None:
                return answer
        return await read_flow_run(flow_run_id)

    client.set_flow_run_state = set_state_noting_running  # type: ignore[method-assign]
    client.read_flow_run = read_answering_running  # type: ignore[method-assign]
    client._taskflows_answers_running_rereads = True  # type: ignore[attr-defined]


@contextlib.contextmanager
def shared_client(client: PrefectClient) -> Iterator[None]:
    """Make `client` (already open, on this event loop) the one the engine uses."""
    context = AsyncClientContext.model_construct(client=client)
    with context:
        yield


@contextlib.contextmanager
def shared_sync_client() -> Iterator[None]:
    """One open synchronous Prefect client for everything run inside the block (flow runs
    started as tasks inside it inherit it): `get_client(sync_client=True)` returns it
    instead of building a client per call."""
    with SyncClientContext():
        yield
