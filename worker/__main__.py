"""`python -m worker`: serve the `taskflows` work pool until SIGINT or SIGTERM."""

import asyncio

from flows.settings import settings_or_exit


def run() -> None:
    # Before Prefect is imported: a bad setting is reported in a sentence, at once.
    settings_or_exit("taskflows worker")
    import uvloop

    from worker.service import main

    # uvloop, like the API's uvicorn: the worker's event loop carries every run's HTTP,
    # SQL and task engine, and uvloop's costs less CPU per callback than asyncio's own.
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main())


run()
