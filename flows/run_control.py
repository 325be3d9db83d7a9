"""The runs in flight in this process, and how to stop one.

The worker runs many flow runs in one process. To cancel one it sets that run's cancel
event; the flow notices at once (even mid-prompt: the agent call is abandoned), ends its
execution `cancelled` and returns Prefect's Cancelled state. Cancelling the asyncio task
instead would make Prefect's engine report the run as Crashed.

The worker also reads the registry to renew the lease of each running execution.
"""

from __future__ import annotations

import asyncio
import os
import socket
from dataclasses import dataclass, field
from uuid import UUID

DEFAULT_CANCEL_REASON = "The run was cancelled."


@dataclass
class InFlightRun:
    flow_run_id: UUID
    execution_id: int | None = None
    cancel_requested: asyncio.Event = field(default_factory=asyncio.Event)
    cancel_reason: str = DEFAULT_CANCEL_REASON


_runs: dict[UUID, InFlightRun] = {}
_worker_name: str = f"{socket.gethostname()}-{os.getpid()}"
_in_taskflows_worker = False


def set_worker_name(name: str) -> None:
    """Called by the taskflows worker, which renews the leases of all its runs at once."""
    global _worker_name, _in_taskflows_worker
    _worker_name = name
    _in_taskflows_worker = True


def renews_leases_itself() -> bool:
    """True outside the taskflows worker (a docker or kubernetes pool, a process worker):
    there each run must renew its own lease, or the reconciler would take it for dead."""
    return not _in_taskflows_worker


def worker_name() -> str:
    """Who holds the lease of the executions this process runs."""
    return _worker_name


def track(flow_run_id: UUID) -> InFlightRun:
    """Register a run (idempotent); the flow and the worker share the returned record."""
    run = _runs.get(flow_run_id)
    if run is None:
        run = _runs[flow_run_id] = InFlightRun(flow_run_id)
    return run


def forget(flow_run_id: UUID) -> None:
    _runs.pop(flow_run_id, None)


def in_flight() -> list[InFlightRun]:
    return list(_runs.values())


def request_cancel(flow_run_id: UUID, reason: str = DEFAULT_CANCEL_REASON) -> bool:
    """Ask a run of this process to stop; False when it does not run here."""
    run = _runs.get(flow_run_id)
    if run is None:
        return False
    if not run.cancel_requested.is_set():
        run.cancel_reason = reason
        run.cancel_requested.set()
    return True


def by_execution(execution_id: int) -> InFlightRun | None:
    return next((run for run in _runs.values() if run.execution_id == execution_id), None)
