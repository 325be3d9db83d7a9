"""Running the whole system on one machine: the process supervisor, the embedded PostgreSQL,
the Prefect server process, `make up` and the demo agent."""
