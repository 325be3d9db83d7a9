"""Bad input against the real API: every error is JSON with a sentence a person understands.

The old server answered `abc` as an id, or `limit=-1`, with HTTP 500 and raw database text,
and some errors as HTML with server paths. Each test here sends one kind of bad input over
HTTP to the running API (real PostgreSQL and Prefect behind it) and checks the status code
and the body a user sees.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

MAX_ID = 2**63 - 1
# What must never reach a client: stack traces, driver names, SQL, server paths.
LEAKS = ("Traceback", 'File "', "psycopg", "SELECT", "INSERT", "/work/", "site-packages")


def assert_error(response: httpx.Response, status: int) -> dict[str, Any]:
    """`response` has `status` and the API's JSON error body; return the body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json"), response.text
    body = response.json()
    assert body["ok"] is False
    sentence = body["error"]
    assert isinstance(sentence, str)
    assert len(sentence) > 10 and " " in sentence, f"not a sentence: {sentence!r}"
    assert isinstance(body.get("detail", []), list)
    for leak in LEAKS:
        assert leak not in response.text, f"{leak!r} leaked into {response.text!r}"
    return body


def unique_name(prefix: str = "errors") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def task_flow(make_task_flow: Callable[..., dict[str, Any]]) -> dict[str, Any]:
    return make_task_flow(call_name=unique_name(), prompts=["first prompt", "second prompt"])


# --- ids -------------------------------------------------------------------------------


@pytest.mark.parametrize("bad_id", ["abc", "0", "-1", "1.5", str(MAX_ID + 1), "1e3"])
@pytest.mark.parametrize("path", ["/api/task_flows/{}", "/api/executions/{}", "/api/memories/{}"])
def test_an_id_that_is_not_a_positive_bigint_is_422(
    api: httpx.Client, path: str, bad_id: str
) -> None:
    body = assert_error(api.get(path.format(bad_id)), 422)
    assert body["detail"], "field errors are listed"
    assert "id" in body["error"]


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE"])
def test_writes_with_a_non_integer_id_are_422(api: httpx.Client, method: str) -> None:
    body = {"call_name": unique_name(), "prompts": ["x"]}
    assert_error(api.request(method, "/api/task_flows/abc", json=body), 422)


def test_running_a_task_flow_with_a_non_integer_id_is_422(api: httpx.Client) -> None:
    assert_error(api.post("/api/task_flows/abc/run"), 422)


@pytest.mark.parametrize(
    ("path", "sentence"),
    [
        (f"/api/task_flows/{MAX_ID}", f"Task flow {MAX_ID} does not exist."),
        (f"/api/executions/{MAX_ID}", f"Execution {MAX_ID} does not exist."),
        (f"/api/memories/{MAX_ID}", f"Memory {MAX_ID} does not exist."),
    ],
)
def test_an_unknown_id_is_404_with_a_sentence(api: httpx.Client, path: str, sentence: str) -> None:
    assert assert_error(api.get(path), 404)["error"] == sentence


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE"])
def test_writing_an_unknown_task_flow_is_404(api: httpx.Client, method: str) -> None:
    body = {"call_name": unique_name(), "prompts": ["x"]}
    assert_error(api.request(method, f"/api/task_flows/{MAX_ID}", json=body), 404)


def test_running_an_unknown_task_flow_is_404(api: httpx.Client) -> None:
    assert_error(api.post(f"/api/task_flows/{MAX_ID}/run"), 404)


# --- limit and paging ------------------------------------------------------------------


@pytest.mark.parametrize("limit", ["0", "-1", "501", "abc", "", "1.5", "99999999999999999999"])
def test_recent_limit_outside_1_to_500_is_422(api: httpx.Client, limit: str) -> None:
    body = assert_error(api.get("/api/executions/recent", params={"limit": limit}), 422)
    assert body["error"].startswith("limit ")
    assert body["detail"][0]["field"] == "limit"


@pytest.mark.parametrize("limit", [1, 20, 500])
def test_recent_limit_inside_the_range_is_a_json_array(api: httpx.Client, limit: int) -> None:
    response = api.get("/api/executions/recent", params={"limit": limit})
    assert response.status_code == 200, response.text
    assert isinstance(response.json(), list)
    assert len(response.json()) <= limit


@pytest.mark.parametrize("before_id", ["0", "-5", "x"])
def test_recent_before_id_must_be_a_positive_integer(api: httpx.Client, before_id: str) -> None:
    assert_error(api.get("/api/executions/recent", params={"before_id": before_id}), 422)


# --- task flow bodies ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prompts", "field"),
    [
        ([], "prompts"),
        ([""], "prompts[0]"),
        (["   "], "prompts[0]"),
        (["fine", 1], "prompts[1]"),
        (["fine", None], "prompts[1]"),
        ([{"text": "hi"}], "prompts[0]"),
        ([["nested"]], "prompts[0]"),
        ("one string, not a list", "prompts"),
        (None, "prompts"),
        (["p"] * 1001, "prompts"),
    ],
)
def test_bad_prompts_are_422_naming_the_prompt(api: httpx.Client, prompts: Any, field: str) -> None:
    response = api.post("/api/task_flows", json={"call_name": unique_name(), "prompts": prompts})
    body = assert_error(response, 422)
    assert body["detail"][0]["field"] == field
    assert field in body["error"]


def test_missing_prompts_is_422(api: httpx.Client) -> None:
    body = assert_error(api.post("/api/task_flows", json={"call_name": unique_name()}), 422)
    assert "prompts" in body["error"]


@pytest.mark.parametrize(
    "call_name", ["", "    ", 42, None, "x" * 201, "two\nlines", "daily/report", "a<b>"]
)
def test_bad_call_names_are_422(api: httpx.Client, call_name: Any) -> None:
    response = api.post("/api/task_flows", json={"call_name": call_name, "prompts": ["x"]})
    assert "call_name" in assert_error(response, 422)["error"]


def test_an_unknown_field_is_422_not_silently_ignored(api: httpx.Client) -> None:
    body = {"call_name": unique_name(), "prompts": ["x"], "promts": ["typo"]}
    assert "promts" in assert_error(api.post("/api/task_flows", json=body), 422)["error"]


@pytest.mark.parametrize("payload", ["[]", '"text"', "42", "null"])
def test_a_body_that_is_not_an_object_is_422(api: httpx.Client, payload: str) -> None:
    response = api.post(
        "/api/task_flows", content=payload, headers={"Content-Type": "application/json"}
    )
    assert_error(response, 422)


@pytest.mark.parametrize("payload", ['{"call_name": "x",', "{'single': 'quotes'}", "{,}", "nul"])
def test_malformed_json_is_400_json(api: httpx.Client, payload: str) -> None:
    response = api.post(
        "/api/task_flows", content=payload, headers={"Content-Type": "application/json"}
    )
    assert "not valid JSON" in assert_error(response, 400)["error"]


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded"])
def test_a_body_that_is_not_declared_json_is_415(api: httpx.Client, content_type: str) -> None:
    payload = json.dumps({"call_name": unique_name(), "prompts": ["x"]})
    response = api.post("/api/task_flows", content=payload, headers={"Content-Type": content_type})
    assert "application/json" in assert_error(response, 415)["error"]


def test_a_body_over_1_mib_is_413(api: httpx.Client) -> None:
    payload = {"call_name": unique_name(), "prompts": ["x" * (2 * 1024 * 1024)]}
    body = assert_error(api.post("/api/task_flows", json=payload), 413)
    assert body["error"] == "The request body is larger than 1 MiB."


def test_a_chunked_body_over_1_mib_is_413_without_content_length(api: httpx.Client) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"call_name": "chunked", "prompts": ["'
        for _ in range(40):
            yield b"y" * 65536
        yield b'"]}'

    response = api.post(
        "/api/task_flows", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert_error(response, 413)


# --- conflicts -------------------------------------------------------------------------


def test_a_taken_call_name_is_409(api: httpx.Client, task_flow: dict[str, Any]) -> None:
    response = api.post(
        "/api/task_flows", json={"call_name": task_flow["call_name"], "prompts": ["x"]}
    )
    assert task_flow["call_name"] in assert_error(response, 409)["error"]


def test_renaming_onto_a_taken_call_name_is_409(
    api: httpx.Client, make_task_flow: Callable[..., dict[str, Any]]
) -> None:
    first = make_task_flow(call_name=unique_name(), prompts=["a"])
    second = make_task_flow(call_name=unique_name(), prompts=["b"])
    response = api.patch(f"/api/task_flows/{second['id']}", json={"call_name": first["call_name"]})
    assert_error(response, 409)


def test_a_stale_version_is_409_and_changes_nothing(
    api: httpx.Client, task_flow: dict[str, Any]
) -> None:
    url = f"/api/task_flows/{task_flow['id']}"
    version = task_flow["version"]
    fresh = api.patch(url, json={"description": "first edit", "version": version})
    assert fresh.status_code == 200, fresh.text
    assert fresh.headers["ETag"] == f'"{version + 1}"'

    stale = api.patch(url, json={"description": "lost edit", "version": version})
    assert "changed by someone else" in assert_error(stale, 409)["error"]
    stale_header = api.patch(
        url, json={"description": "lost edit"}, headers={"If-Match": f'"{version}"'}
    )
    assert_error(stale_header, 409)
    stale_put = api.put(
        url, json={"call_name": task_flow["call_name"], "prompts": ["z"], "version": version}
    )
    assert_error(stale_put, 409)
    assert api.get(url).json()["description"] == "first edit"


@pytest.mark.parametrize("if_match", ["bogus", '"-1"', '"abc"', '""'])
def test_a_malformed_if_match_is_422(
    api: httpx.Client, task_flow: dict[str, Any], if_match: str
) -> None:
    response = api.patch(
        f"/api/task_flows/{task_flow['id']}",
        json={"description": "x"},
        headers={"If-Match": if_match},
    )
    assert "If-Match" in assert_error(response, 422)["error"]


@pytest.mark.parametrize("patch", [{}, {"call_name": None}, {"prompts": None}, {"prompts": []}])
def test_an_empty_or_null_patch_is_422(
    api: httpx.Client, task_flow: dict[str, Any], patch: dict[str, Any]
) -> None:
    assert_error(api.patch(f"/api/task_flows/{task_flow['id']}", json=patch), 422)


# --- runs ------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["", "k" * 201])
def test_a_bad_idempotency_key_is_422_and_starts_nothing(
    api: httpx.Client, task_flow: dict[str, Any], key: str
) -> None:
    before = api.get("/api/executions/recent", params={"limit": 500}).json()
    response = api.post(f"/api/task_flows/{task_flow['id']}/run", headers={"Idempotency-Key": key})
    assert "Idempotency-Key" in assert_error(response, 422)["error"]
    after = api.get("/api/executions/recent", params={"limit": 500}).json()
    assert [e for e in after if e["flow_id"] == task_flow["id"]] == [
        e for e in before if e["flow_id"] == task_flow["id"]
    ]


@pytest.mark.parametrize("payload", ["[]", '{"unexpected": 1}'])
def test_a_run_body_must_be_an_empty_object(
    api: httpx.Client, task_flow: dict[str, Any], payload: str
) -> None:
    response = api.post(
        f"/api/task_flows/{task_flow['id']}/run",
        content=payload,
        headers={"Content-Type": "application/json"},
    )
    assert_error(response, 422)


# --- memories --------------------------------------------------------------------------


@pytest.mark.parametrize("payload", [{}, {"content": ""}, {"content": "   "}, {"content": 7}])
def test_bad_memories_are_422(api: httpx.Client, payload: dict[str, Any]) -> None:
    assert "content" in assert_error(api.post("/api/memories", json=payload), 422)["error"]


def test_writing_an_unknown_memory_is_404(api: httpx.Client) -> None:
    assert_error(api.put(f"/api/memories/{MAX_ID}", json={"content": "x"}), 404)
    assert_error(api.delete(f"/api/memories/{MAX_ID}"), 404)


# --- routes ----------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/nothing", "/api/executions/active/extra", "/static/x.js"])
def test_an_unknown_route_is_404_json(api: httpx.Client, path: str) -> None:
    assert_error(api.get(path), 404)


@pytest.mark.parametrize(
    ("method", "path"),
    [("DELETE", "/api/executions/active"), ("POST", "/healthz"), ("PUT", "/api/task_flows")],
)
def test_a_wrong_method_is_405_json(api: httpx.Client, method: str, path: str) -> None:
    response = api.request(method, path)
    assert method in assert_error(response, 405)["error"]
    assert "GET" in response.headers["Allow"]
