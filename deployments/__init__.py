"""Running taskflows: the embedded database, the process supervisor, `up`, the worker."""
