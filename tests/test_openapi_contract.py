"""Schemathesis over our OpenAPI spec: whatever a client sends, the API answers with a
documented status and body, and never with a server error."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.conftest import System


@pytest.fixture(scope="session")
def api_schema(system: System) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{system.api_url}/openapi.json")


@pytest.fixture(scope="module", autouse=True)
def leave_things_as_found(api: httpx.Client) -> Iterator[None]:
    """Generated memories would be sent to the agent in later tests, and generated
    schedules, scheduled prompts and alerts would keep firing: remove them."""
    before = {m["id"] for m in api.get("/api/memories").json()}
    yield
    for memory in api.get("/api/memories").json():
        if memory["id"] not in before:
            api.delete(f"/api/memories/{memory['id']}")
    for task_flow in api.get("/api/task_flows").json():
        api.delete(f"/api/task_flows/{task_flow['id']}/schedule")
        api.delete(f"/api/task_flows/{task_flow['id']}/alerts")
    api.delete("/api/alerts")
    for scheduled in api.get("/api/scheduled_prompts").json():
        api.delete(f"/api/scheduled_prompts/{scheduled['id']}")


def _fuzz(operation: schemathesis.APIOperation) -> None:
    """Send generated requests to one operation and run the checks on the answers.

    Every check but one: "a schema-valid request is accepted" cannot hold where meaning is
    checked beyond what a JSON schema can say (a cron expression, a NUL character that
    PostgreSQL cannot store, two version preconditions that disagree); those get a 4xx
    with a sentence, which the other checks still verify against the spec.
    """

    @settings(
        max_examples=15, deadline=None, suppress_health_check=list(HealthCheck), database=None
    )
    @given(case=operation.as_strategy())
    def check(case: schemathesis.Case) -> None:
        case.call_and_validate(excluded_checks=[positive_data_acceptance])

    check()


@pytest.mark.slow
def test_api_honours_its_openapi_contract(api_schema: schemathesis.BaseSchema) -> None:
    # Schemathesis' pytest plugin does not load under this pytest, so drive Hypothesis
    # directly: every operation, generated cases, every default check.
    failures: list[str] = []
    operations = 0
    for result in api_schema.get_all_operations():
        operation = result.ok()  # type: ignore[union-attr]
        if operation.path.endswith("/stream"):
            continue  # an endless event stream, covered by tests/test_stream.py
        operations += 1
        try:
            _fuzz(operation)
        except (Exception, BaseExceptionGroup) as exc:  # report every failing operation
            failures.append(f"{operation.label}: {str(exc)[:600]}")
    assert operations >= 14
    assert not failures, "\n\n".join(failures)
