"""The one place where taskflows bends Prefect's engine to run many flow runs in one process.

Prefect 3.9.1 (pinned exactly in pyproject.toml) assumes one flow run per process. Each
change below is checked by tests (tests/test_crashes.py, tests/test_worker_engine.py, and
every test that runs a flow through the worker) and its effect measured by `make bench`
(see README "Performance"):

- `capture_sigterm` installs a process-wide SIGTERM handler per run, so a SIGTERM meant for
  the worker would become a crash of whichever run installed it last, and the worker
  could not stop gracefully. The worker owns its signals; runs must not touch them.
- `observe_flow_run_suspension` starts, for every run of a deployment, a thread with its
  own event loop, Prefect client and events websocket, and joins it at the end (up to
  0.2 s with the worker's event loop blocked). Task flows never suspend or pause.
- The server's default result storage is read with a new synchronous client, a blocking
  HTTP request on the event loop, at the start of every run. It does not change while a
  worker runs: read it once per process.

The worker also runs every flow run inside one shared `AsyncClientContext` (see
`shared_client`), so runs reuse its Prefect client instead of building one each (a new
SSL context, CSRF token and TCP connection per run).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from typing import Any

import prefect
import prefect.flow_engine
import prefect.results
from prefect.client.orchestration import PrefectClient
from prefect.context import AsyncClientContext

PINNED_PREFECT = "3.9.1"
_applied = False


@contextlib.contextmanager
def _no_suspension_observer(*args: Any, **kwargs: Any) -> Iterator[None]:
    yield


def apply() -> None:
    """Patch the engine for in-process runs (idempotent)."""
    global _applied
    if _applied:
        return
    if prefect.__version__ != PINNED_PREFECT:
        raise RuntimeError(
            f"taskflows' worker is verified against Prefect {PINNED_PREFECT}, "
            f"found {prefect.__version__}: re-check worker/engine_patches.py."
        )
    prefect.flow_engine.capture_sigterm = contextlib.nullcontext  # type: ignore[assignment]
    prefect.flow_engine.observe_flow_run_suspension = _no_suspension_observer
    prefect.results._read_server_default_result_storage_block_id = functools.cache(
        prefect.results._read_server_default_result_storage_block_id
    )
    _applied = True


@contextlib.contextmanager
def shared_client(client: PrefectClient) -> Iterator[None]:
    """Make `client` (already open, on this event loop) the one the engine uses."""
    context = AsyncClientContext.model_construct(client=client)
    with context:
        yield
