"""The long-lived taskflows worker: serves the `taskflows` work pool, running each flow run
in-process as an asyncio task (`python -m worker`), with the Prefect engine patches it needs."""
