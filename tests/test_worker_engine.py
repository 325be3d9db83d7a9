"""The engine patches refuse a Prefect they were not verified against, and leave the
process's SIGTERM handling to the worker (the behaviour itself: tests/test_crashes.py)."""

from __future__ import annotations

import signal
import uuid

import prefect
import pytest

from worker import engine_patches


def test_patches_refuse_an_unverified_prefect(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine_patches, "_applied", False)
    monkeypatch.setattr(prefect, "__version__", "3.99.0")
    with pytest.raises(RuntimeError, match=r"re-check worker/engine_patches\.py"):
        engine_patches.apply()


def test_a_patched_engine_installs_no_sigterm_handler() -> None:
    engine_patches.apply()
    before = signal.getsignal(signal.SIGTERM)
    with prefect.flow_engine.capture_sigterm():
        assert signal.getsignal(signal.SIGTERM) is before
    with prefect.flow_engine.observe_flow_run_suspension(uuid.uuid4(), None):  # type: ignore[arg-type]
        pass  # no observer thread, nothing to wait for
