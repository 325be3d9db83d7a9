"""A task flow runs on Prefect and is mirrored into flow_executions, end to end."""

from __future__ import annotations

import time

import httpx

from stack.demo_agent import DemoAgent
from tests.conftest import wait_for_execution, wait_for_flow_run


def test_run_completes_with_every_response_and_a_completed_flow_run(
    api: httpx.Client, prefect_api: httpx.Client, fake_agent: DemoAgent, make_task_flow
):
    flow = make_task_flow(prompts=["What is 2+2?", "And 3+3?", "Thanks"])

    response = api.post(f"/api/task_flows/{flow['id']}/run")
    assert response.status_code == 200, response.text
    started = response.json()
    assert started["ok"] is True
    assert started["flow_id"] == flow["id"]
    assert started["flow_run_id"]

    execution = wait_for_execution(api, started["execution_id"])
    assert execution["status"] == "completed", execution
    assert execution["error"] is None
    assert execution["current_prompt_index"] == execution["total_prompts"] == 3
    assert execution["completed_at"] is not None
    results = execution["prompt_results"]
    assert [r["prompt"] for r in results] == ["What is 2+2?", "And 3+3?", "Thanks"]
    assert [r["response"] for r in results] == [
        "Echo: What is 2+2?",
        "Echo: And 3+3?",
        "Echo: Thanks",
    ]
    assert all(r["success"] and r["usage"]["total_tokens"] > 0 for r in results)
    assert [r["index"] for r in results] == [0, 1, 2]
    assert execution["prefect_url"].endswith(f"/runs/flow-run/{started['flow_run_id']}")

    flow_run = wait_for_flow_run(prefect_api, started["flow_run_id"])
    assert flow_run["state"]["type"] == "COMPLETED"
    assert flow_run["name"] == f"{flow['call_name']} #{started['execution_id']}"
    # Prefect records task runs from events, a moment after they happen.
    deadline = time.monotonic() + 15
    names: list[str] = []
    while time.monotonic() < deadline and len(names) < 3:
        task_runs = prefect_api.post(
            "/task_runs/filter",
            json={"flow_runs": {"id": {"any_": [started["flow_run_id"]]}}},
        ).json()
        names = sorted(t["name"] for t in task_runs)
        time.sleep(0.2)
    assert names == ["prompt 1/3", "prompt 2/3", "prompt 3/3"]


def test_failing_prompt_fails_the_execution_and_later_prompts_are_never_sent(
    api: httpx.Client, prefect_api: httpx.Client, fake_agent: DemoAgent, make_task_flow
):
    flow = make_task_flow(prompts=["first", "second [fail=400]", "third"])

    started = api.post(f"/api/task_flows/{flow['id']}/run").json()
    execution = wait_for_execution(api, started["execution_id"])

    assert execution["status"] == "failed"
    assert "HTTP 400" in execution["error"] and "Prompt 2 of 3" in execution["error"]
    # The prompts attempted, the failed one included (as the old runner counted).
    assert execution["current_prompt_index"] == 2
    first, second = execution["prompt_results"]
    assert first["success"] is True
    assert second["success"] is False and "HTTP 400" in second["error"]
    assert "third" not in fake_agent.prompts_received()
    flow_run = wait_for_flow_run(prefect_api, started["flow_run_id"])
    assert flow_run["state"]["type"] == "FAILED"


def test_running_execution_is_active_then_recent(
    api: httpx.Client, fake_agent: DemoAgent, make_task_flow
):
    flow = make_task_flow(prompts=["slow one [delay=1.5]", "quick"])
    execution_id = api.post(f"/api/task_flows/{flow['id']}/run").json()["execution_id"]

    wait_for_execution(api, execution_id, until=lambda e: e["status"] == "running")
    active = api.get("/api/executions/active").json()
    assert execution_id in [e["id"] for e in active]
    assert all(e["status"] in ("queued", "running") for e in active)

    wait_for_execution(api, execution_id)
    assert execution_id not in [e["id"] for e in api.get("/api/executions/active").json()]
    recent = api.get("/api/executions/recent", params={"limit": 5}).json()
    assert recent[0]["id"] == execution_id and recent[0]["status"] == "completed"
    assert [e["id"] for e in recent] == sorted((e["id"] for e in recent), reverse=True)


def test_deleting_a_task_flow_keeps_its_executions(
    api: httpx.Client, fake_agent: DemoAgent, make_task_flow
):
    flow = make_task_flow(prompts=["remember me"])
    execution_id = api.post(f"/api/task_flows/{flow['id']}/run").json()["execution_id"]
    wait_for_execution(api, execution_id)

    assert api.delete(f"/api/task_flows/{flow['id']}").status_code in (200, 204)
    assert api.get(f"/api/task_flows/{flow['id']}").status_code == 404

    kept = api.get(f"/api/executions/{execution_id}").json()
    assert kept["status"] == "completed"
    assert kept["call_name"] == flow["call_name"]
    assert kept["prompt_results"][0]["response"] == "Echo: remember me"


def test_run_started_on_the_prefect_side_gets_its_own_execution(
    api: httpx.Client, prefect_api: httpx.Client, fake_agent: DemoAgent, make_task_flow
):
    flow = make_task_flow(prompts=["from the Prefect UI"])
    deployment_id = api.get(f"/api/task_flows/{flow['id']}").json()["deployment_id"]
    assert deployment_id, "a task flow gets its Prefect deployment when it is created"

    created = prefect_api.post(f"/deployments/{deployment_id}/create_flow_run", json={})
    assert created.status_code == 201, created.text
    flow_run_id = created.json()["id"]

    deadline = time.monotonic() + 60
    mine: list[dict] = []
    while time.monotonic() < deadline and not mine:
        recent = api.get("/api/executions/recent", params={"limit": 50}).json()
        mine = [e for e in recent if e["flow_run_id"] == flow_run_id]
        time.sleep(0.2)
    assert mine, "the flow run created its execution row"
    execution = wait_for_execution(api, mine[0]["id"])
    assert execution["status"] == "completed"
    assert execution["trigger"] == "prefect-ui"
    assert execution["prompt_results"][0]["response"] == "Echo: from the Prefect UI"
    flow_run = wait_for_flow_run(prefect_api, flow_run_id)
    assert flow_run["state"]["type"] == "COMPLETED"
    assert flow_run["name"] == f"{flow['call_name']} #{execution['id']}"


def test_memories_reach_the_agent_as_one_system_message(
    api: httpx.Client, fake_agent: DemoAgent, make_task_flow
):
    memory = api.post("/api/memories", json={"content": "The user prefers metric units."})
    assert memory.status_code in (200, 201), memory.text
    try:
        flow = make_task_flow(prompts=["How far is the moon?"])
        execution_id = api.post(f"/api/task_flows/{flow['id']}/run").json()["execution_id"]
        assert wait_for_execution(api, execution_id)["status"] == "completed"
        messages = fake_agent.requests[-1].messages
        assert messages[0]["role"] == "system"
        assert "The user prefers metric units." in messages[0]["content"]
        assert messages[-1] == {"role": "user", "content": "How far is the moon?"}
        answer = api.get(f"/api/executions/{execution_id}").json()["prompt_results"][0]
        assert answer["response"] == "Echo (with 1 memory): How far is the moon?"
    finally:
        api.delete(f"/api/memories/{memory.json()['id']}")


def test_edited_flow_does_not_change_a_running_execution(
    api: httpx.Client, fake_agent: DemoAgent, make_task_flow
):
    flow = make_task_flow(prompts=["one [delay=1]", "two"])
    execution_id = api.post(f"/api/task_flows/{flow['id']}/run").json()["execution_id"]
    wait_for_execution(api, execution_id, until=lambda e: e["status"] == "running")

    edited = api.patch(f"/api/task_flows/{flow['id']}", json={"prompts": ["changed"]})
    assert edited.status_code == 200, edited.text

    execution = wait_for_execution(api, execution_id)
    assert execution["status"] == "completed"
    assert execution["prompts"] == ["one [delay=1]", "two"]
    assert [r["prompt"] for r in execution["prompt_results"]] == ["one [delay=1]", "two"]
