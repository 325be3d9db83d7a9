"""Each task flow is a Prefect flow of its own, named after the task flow's `call_name`.

A Prefect user looks for their task flows on the Flows page: there, task flow `hello` is
flow `hello`, with its deployment `hello/hello` and its runs. All of them run the same
function (`flows/taskflow.py:run_task_flow`); Prefect names a flow by `Flow.name`, so the
worker runs a copy of `run_task_flow` named like the flow run's flow, and the engine's
events and logs name the task flow too. Example::

    flow = await FlowsByRun().flow_for(client, flow_run)   # the Flow named "hello"
    await run_flow_async(flow, flow_run=flow_run, parameters=flow_run.parameters)
"""

from __future__ import annotations

import copy
import logging
from functools import lru_cache
from typing import Any
from uuid import UUID

from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.objects import FlowRun
from prefect.flows import Flow

from flows.taskflow import run_task_flow

logger = logging.getLogger(__name__)

# Flow names seen by a worker are bounded by the task flows that exist (plus renames).
_CACHED_FLOWS = 4096


@lru_cache(maxsize=_CACHED_FLOWS)
def flow_named(name: str) -> Flow[..., Any]:
    """`run_task_flow` under the Prefect flow name `name` (one object per name)."""
    if name == run_task_flow.name:
        return run_task_flow
    # A copy with another name: `with_options(name=...)` would build the flow again (its
    # parameter schema, its source hash), and the first run of a new task flow waited on it.
    flow = copy.copy(run_task_flow)
    flow.name = name
    return flow


class FlowsByRun:
    """Which flow object runs a flow run: the one named like the run's Prefect flow.

    The flow's name is read from Prefect once per flow id; a flow's name never changes
    (a renamed task flow gets a new flow), so the answer is cached for good.
    """

    def __init__(self) -> None:
        self._names: dict[UUID, str] = {}

    async def flow_for(self, client: PrefectClient, flow_run: FlowRun) -> Flow[..., Any]:
        name = self._names.get(flow_run.flow_id)
        if name is None:
            try:
                name = (await client.read_flow(flow_run.flow_id)).name
            except Exception as exc:
                # The run is claimed already: run it under the shared name rather than
                # leave it Pending; only its events and log lines name the flow.
                logger.warning("Could not read flow %s (%r)", flow_run.flow_id, exc)
                return run_task_flow
            self._names[flow_run.flow_id] = name
        return flow_named(name)
