"""Running the whole system on one machine: `start_system()` (system.py, shared by `make up`,
the tests and the bench), `make up` itself, the process supervisor, the embedded
PostgreSQL, the Prefect server process, and the demo agent (as a child, or in a thread)."""
