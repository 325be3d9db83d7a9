"""Which task-run log records the worker keeps, and how it prints the rest.

Prefect's task engine logs "Finished in state Completed()" at INFO for every task run. Its
API log handler ships each such record to the server (a log row per prompt, serialised in
the worker and inserted by the server), and its console handler renders it with rich in the
worker's log. The task run's state, timing and name already show that in the Prefect UI, so
the worker drops these records on the task-run logger itself, before any handler sees them.

Every other task-run record still reaches the Prefect UI and the worker's log: a failed
prompt's "Finished in state Failed(...)" (an ERROR), the "Retry 1/3 will start ..." line
(INFO), warnings; and so does every flow-run record.

The worker's console (its log file under `make up`) gets the same lines in the same format
as from Prefect's console handler, but printed by a plain `logging.StreamHandler`: Prefect's
handler renders each line through rich (highlighting, markup), about 4 % of the worker's
CPU in `python -m bench --only launch`, for colours nobody sees in a log file.
"""

from __future__ import annotations

import logging

from prefect.logging.handlers import PrefectConsoleHandler

TASK_RUN_LOGGER = "prefect.task_runs"
COMPLETED_RECORD = "Finished in state Completed"


class CompletedTaskRecordsDropped(logging.Filter):
    """Rejects the task engine's "Finished in state Completed()" records (INFO)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (
            record.levelno < logging.WARNING
            and isinstance(record.msg, str)
            and record.msg.startswith(COMPLETED_RECORD)
        )


def drop_completed_task_records() -> None:
    """Attach the filter to Prefect's task-run logger (idempotent)."""
    task_runs = logging.getLogger(TASK_RUN_LOGGER)
    if not any(isinstance(f, CompletedTaskRecordsDropped) for f in task_runs.filters):
        task_runs.addFilter(CompletedTaskRecordsDropped())


def plain_console() -> None:
    """Replace every Prefect console handler with a plain stream handler writing the same
    lines (same stream, formatter, level and filters); idempotent."""
    loggers = [logging.getLogger()] + [
        logger
        for logger in logging.Logger.manager.loggerDict.values()
        if isinstance(logger, logging.Logger)
    ]
    for logger in loggers:
        for index, handler in enumerate(list(logger.handlers)):
            if not isinstance(handler, PrefectConsoleHandler):
                continue
            plain = logging.StreamHandler(handler.stream)
            plain.setFormatter(handler.formatter)
            plain.setLevel(handler.level)
            for log_filter in handler.filters:
                plain.addFilter(log_filter)
            logger.handlers[index] = plain
