"""The one place where taskflows bends Prefect's engine to run many flow runs in one process.

Prefect 3.9.1 (pinned exactly in pyproject.toml) assumes one flow run per process:
`capture_sigterm` installs a process-wide SIGTERM handler for each run, so a SIGTERM meant
for the worker would be turned into a crash of whichever run installed it last, and the
worker could not stop gracefully. The worker owns its signals; runs must not touch them.
tests/test_worker.py covers this (a worker with runs in flight stops cleanly on SIGTERM).
"""

from __future__ import annotations

import contextlib

import prefect
import prefect.flow_engine

PINNED_PREFECT = "3.9.1"
_applied = False


def apply() -> None:
    """Stop flow runs from installing process-wide SIGTERM handlers. Idempotent."""
    global _applied
    if _applied:
        return
    if prefect.__version__ != PINNED_PREFECT:
        raise RuntimeError(
            f"taskflows' worker is verified against Prefect {PINNED_PREFECT}, "
            f"found {prefect.__version__}: re-check deployments/engine_patches.py."
        )
    prefect.flow_engine.capture_sigterm = contextlib.nullcontext  # type: ignore[assignment]
    _applied = True
