"""Which run log records the worker ships to the Prefect API.

Prefect's task engine logs "Finished in state Completed()" at INFO for every task run, and
its API log handler ships each such record to the server (a log row per prompt, with its
serialisation in the worker and an insert on the server). The task run's state, timing and
name already show that in the Prefect UI, so task-run records below WARNING stay in the
worker's own log (its console handler still prints them). Task-run warnings and errors (a
failed prompt's "Finished in state Failed(...)" is an ERROR) and every flow-run record still
reach the UI.
"""

from __future__ import annotations

import logging

from prefect.logging.handlers import APILogHandler

TASK_RUN_LOGGER = "prefect.task_runs"


class TaskRunInfoStaysLocal(logging.Filter):
    """Rejects task-run records below WARNING (attached to API handlers only)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (
            record.levelno < logging.WARNING
            and (record.name == TASK_RUN_LOGGER or record.name.startswith(TASK_RUN_LOGGER + "."))
        )


def keep_task_run_info_local() -> None:
    """Attach the filter to the API log handlers of Prefect's task-run logger (idempotent)."""
    for handler in logging.getLogger(TASK_RUN_LOGGER).handlers:
        if isinstance(handler, APILogHandler) and not any(
            isinstance(f, TaskRunInfoStaysLocal) for f in handler.filters
        ):
            handler.addFilter(TaskRunInfoStaysLocal())
