"""The FastAPI facade of taskflows: task flows, memories, runs, executions and the web page.

Nothing imports `api`; it imports `deployments` and `flows`. Start it with
`uvicorn api.app:app`.
"""
