"""Benchmarks of taskflows (not tests): `python -m bench` (or `make bench`) starts the whole
system with a fake agent and prints one table of figures, each next to its target and to a
baseline measured in the same run (a plain asyncio + psycopg runner, no orchestrator)."""
