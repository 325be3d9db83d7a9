"""`python -m worker`: serve the `taskflows` work pool until SIGINT or SIGTERM."""

import asyncio

from flows.settings import settings_or_exit


def run() -> None:
    # Before Prefect is imported: a bad setting is reported in a sentence, at once.
    settings_or_exit("taskflows worker")
    from worker.service import main

    asyncio.run(main())


run()
