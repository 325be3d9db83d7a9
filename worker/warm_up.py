"""Load at start-up what the first run would otherwise load while a user waits.

A worker's first flow run used to pay for work no later run repeats: importing Prefect's
task engine (Prefect imports it when the first task is called), building the prompt task
with its retry policy, and starting Prefect's events worker (a thread and a websocket to
the server, opened when the first task run emits its first event). Done here, in the
background right after start-up, the first run after `make up` does not wait for it.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import time

from prefect.events.utilities import should_emit_events
from prefect.events.worker import EventsWorker

from flows.taskflow import prompt_task

logger = logging.getLogger("taskflows.worker")

# Imported by Prefect only when the first task of the first flow run is called.
_LAZY_MODULES = ("prefect.task_engine", "prefect._internal.states", "prefect.concurrency._sync")


async def warm_up() -> None:
    """Import the lazily loaded engine modules, build the prompt task, start the events
    worker."""
    started = time.perf_counter()
    for name in _LAZY_MODULES:
        importlib.import_module(name)
        await asyncio.sleep(0)  # a run that arrives meanwhile is not held up
    prompt_task()
    if should_emit_events():
        EventsWorker.instance()  # the same instance the engine asks for later
    logger.info("Warmed up in %.0f ms", (time.perf_counter() - started) * 1000)
