"""`python -m worker`: serve the `taskflows` work pool until SIGINT or SIGTERM."""

import asyncio

from worker.service import main

asyncio.run(main())
