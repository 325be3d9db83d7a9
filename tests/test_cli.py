"""The `taskflows` CLI, driven in-process against the test system's real API."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

# Rich reads the terminal width once, when the CLI's consoles are made: wide enough that
# tables never cut a name.
os.environ.setdefault("COLUMNS", "200")

from typer.testing import CliRunner

from cli import _follow, app
from cli._api import ApiClient, ApiError
from stack.demo_agent import DemoAgent
from tests.conftest import System, wait_for_execution


class Cli:
    """Runs `taskflows ...` against the test system's API."""

    def __init__(self, api_url: str) -> None:
        self.env = {"TASKFLOWS_API_URL": api_url, "TASKFLOWS_API_TOKEN": ""}
        self.runner = CliRunner()

    def __call__(self, *args: str, expect: int = 0, input: str | None = None) -> Any:
        result = self.runner.invoke(app, list(args), env=self.env, input=input)
        assert result.exit_code == expect, (
            f"taskflows {' '.join(args)} exited {result.exit_code}, not {expect}:\n"
            f"{result.stdout}\n{result.stderr}\n{result.exception!r}"
        )
        assert "Traceback" not in result.output
        return result


@pytest.fixture
def cli(system: System) -> Cli:
    return Cli(system.api_url)


def _name() -> str:
    return f"cli-{uuid.uuid4().hex[:8]}"


def test_create_list_export_import_round_trip(cli: Cli, api: httpx.Client, tmp_path: Path):
    name = _name()
    created = cli("flows", "create", name, "-p", "first prompt", "-p", "second", "-d", "demo")
    assert f"Created task flow {name!r}" in created.stdout

    listing = cli("flows", "list").stdout
    assert name in listing

    exported = tmp_path / "flow.yaml"
    cli("flows", "export", name, "-o", str(exported))
    document = yaml.safe_load(exported.read_text())
    assert document == {
        "call_name": name,
        "agent": "default",
        "description": "demo",
        "prompts": ["first prompt", "second"],
    }
    as_json = json.loads(cli("flows", "export", name, "--format", "json").stdout)
    assert as_json == document

    # Change the file (a multi-line prompt too) and import it: the task flow is updated.
    document["prompts"].append("third,\nover two lines")
    exported.write_text(yaml.safe_dump(document))
    imported = cli("flows", "import", str(exported)).stdout
    assert f"updated {name!r}" in imported
    stored = next(t for t in api.get("/api/task_flows").json() if t["call_name"] == name)
    assert stored["prompts"] == ["first prompt", "second", "third,\nover two lines"]
    assert stored["version"] == 2
    assert f"unchanged {name!r}" in cli("flows", "import", str(exported)).stdout

    # A list in JSON: one known (unchanged), one new (created).
    other = _name()
    several = tmp_path / "flows.json"
    several.write_text(
        json.dumps([document, {"call_name": other, "prompts": ["hello"], "agent": "default"}])
    )
    imported = cli("flows", "import", str(several)).stdout
    assert f"unchanged {name!r}" in imported and f"created {other!r}" in imported
    # Multi-line prompts come back as YAML literal blocks.
    assert "third,\n  over two lines" in cli("flows", "export", name).stdout

    shown = cli("flows", "show", name).stdout
    assert "first prompt" in shown and "demo" in shown
    cli("flows", "edit", name, "--add-prompt", "fourth", "-d", "edited")
    stored = api.get(f"/api/task_flows/{stored['id']}").json()
    assert stored["prompts"][-1] == "fourth" and stored["description"] == "edited"

    for flow in (name, other):
        assert "executions stay" in cli("flows", "delete", flow, "--yes").stdout
    assert name not in cli("flows", "list").stdout


def test_import_reports_invalid_files_and_flows_without_a_traceback(cli: Cli, tmp_path: Path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("call_name: [unclosed\n")
    result = cli("flows", "import", str(broken), expect=1)
    assert "is not valid YAML or JSON" in result.stderr

    empty_prompt = tmp_path / "bad.yaml"
    bad_name = _name()
    empty_prompt.write_text(yaml.safe_dump({"call_name": bad_name, "prompts": ["  "]}))
    result = cli("flows", "import", str(empty_prompt), expect=1)
    assert f"{bad_name}: prompts[0] " in result.stderr  # the API's sentence
    assert "1 of 1 task flows could not be imported" in result.stderr

    assert "No task flow is called" in cli("flows", "show", "no-such-flow", expect=1).stderr


def test_run_follow_exits_0_and_prints_every_response(
    cli: Cli,
    api: httpx.Client,
    fake_agent: DemoAgent,
    make_task_flow,
    monkeypatch: pytest.MonkeyPatch,
):
    def no_polling(*args: Any) -> Any:
        raise AssertionError("the event stream should have carried the run to its end")

    monkeypatch.setattr(_follow, "_by_polling", no_polling)
    flow = make_task_flow(prompts=["What is 2+2?", "And 3+3? [delay=0.3]", "Thanks"])
    result = cli("run", flow["call_name"], "--follow")
    out = result.stdout
    # The fake agent echoes each prompt without its directive.
    for response in ("Echo: What is 2+2?", "Echo: And 3+3?", "Echo: Thanks"):
        assert response in out, out
    assert out.index("Echo: What is 2+2?") < out.index("Echo: Thanks")
    assert "completed: 3 prompts" in out

    execution_id = int(out.split("Started execution ")[1].split()[0])
    execution = api.get(f"/api/executions/{execution_id}").json()
    assert execution["status"] == "completed" and execution["trigger"] == "cli"


def test_run_follow_exits_1_on_a_failing_flow_and_prints_the_error(
    cli: Cli, fake_agent: DemoAgent, make_task_flow
):
    flow = make_task_flow(prompts=["first", "second [fail=400]", "third"])
    result = cli("run", flow["call_name"], "--follow", expect=1)
    assert "Echo: first" in result.stdout
    assert "HTTP 400" in result.stderr and "Prompt 2 of 3 failed" in result.stderr
    assert "third" not in fake_agent.prompts_received()

    execution_id = int(result.stdout.split("Started execution ")[1].split()[0])
    shown = cli("executions", "show", str(execution_id)).stdout
    assert "failed" in shown and "HTTP 400" in shown
    assert str(execution_id) in cli("executions", "list", "--limit", "5").stdout
    # The directive still fails the prompt: the retry resumes there and fails again.
    retried = cli("executions", "retry", str(execution_id), "--follow", expect=1)
    assert f"resumes execution {execution_id}" in retried.stdout
    assert "HTTP 400" in retried.stderr


def test_follow_polls_when_the_event_stream_is_unavailable(
    cli: Cli, fake_agent: DemoAgent, make_task_flow, monkeypatch: pytest.MonkeyPatch
):
    def no_stream(self: ApiClient, path: str, **params: Any) -> Any:
        raise ApiError("There is nothing at this path.", 404)

    monkeypatch.setattr(ApiClient, "events", no_stream)
    flow = make_task_flow(prompts=["polled [delay=0.5]", "again"])
    out = cli("run", flow["call_name"], "-f").stdout
    assert "Echo: polled" in out and "Echo: again" in out


def test_cancel_from_the_cli(cli: Cli, api: httpx.Client, fake_agent: DemoAgent, make_task_flow):
    flow = make_task_flow(prompts=["slow [delay=20]", "never"])
    out = cli("run", flow["call_name"]).stdout
    execution_id = int(out.split("Started execution ")[1].split()[0])
    wait_for_execution(api, execution_id, until=lambda e: e["status"] == "running")
    assert str(execution_id) in cli("executions", "list", "--active").stdout
    assert "is cancelled" in cli("executions", "cancel", str(execution_id)).stdout
    assert wait_for_execution(api, execution_id)["status"] == "cancelled"


def test_schedule_command_sets_shows_and_clears(cli: Cli, make_task_flow):
    flow = make_task_flow()
    shown = cli("schedule", flow["call_name"], "0 7 * * *", "--timezone", "Asia/Tokyo").stdout
    assert "0 7 * * *" in shown and "Asia/Tokyo" in shown and "enabled" in shown
    assert shown.count("07:00 +09:00") == 5  # the next five runs, in Tokyo time

    assert "0 7 * * *" in cli("schedule", flow["call_name"]).stdout
    assert "0 7 * * * (Asia/Tokyo)" in cli("flows", "list").stdout
    disabled = cli("schedule", flow["call_name"], "0 7 * * *", "--disable").stdout
    assert "disabled" in disabled

    bad = cli("schedule", flow["call_name"], "every day", expect=1)
    assert "cron must have 5 fields" in bad.stderr
    bad_zone = cli("schedule", flow["call_name"], "0 7 * * *", "--tz", "Nowhere/Land", expect=1)
    assert "timezone must be an IANA time zone" in bad_zone.stderr

    assert "no longer scheduled" in cli("schedule", flow["call_name"], "--clear").stdout
    assert "has no schedule" in cli("schedule", flow["call_name"]).stdout


def test_unreachable_api_is_one_sentence_and_exit_1():
    cli = Cli("http://127.0.0.1:9")
    result = cli("flows", "list", expect=1)
    assert result.stderr.startswith("Cannot reach the taskflows API at http://127.0.0.1:9")
    assert "taskflows up" in result.stderr


def test_up_runs_what_make_up_runs(monkeypatch: pytest.MonkeyPatch):
    import stack.up

    seen: list[list[str]] = []

    def fake_main(argv: list[str]) -> int:
        seen.append(argv)
        return 3

    monkeypatch.setattr(stack.up, "main", fake_main)
    result = CliRunner().invoke(app, ["up", "--port", "8123", "--worker-command", "true"])
    assert result.exit_code == 3  # up's own exit code
    assert seen == [["--worker-command", "true", "--port", "8123"]]
