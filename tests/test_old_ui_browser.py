"""The old system's UI, unchanged, in chromium against taskflows behind a hub stand-in.

It is the old system's code, so it is not in this repository: build it from the old
system's public repository and point `OLD_UI_DIST` at the result (otherwise these tests
skip)::

    git clone https://github.com/jbrinkw/luna-personal-assistant
    cd luna-personal-assistant/extensions/automation_memory/ui && npm ci && npx vite build
    OLD_UI_DIST=$PWD/dist make test PYTEST_ARGS=tests/test_old_ui_browser.py

The user's path through it: the status in the header, memories, a task flow created,
edited and run (progress live, then the history in the right colour with its results), a
failing run in red with its error, scheduled prompts added, disabled, edited and deleted;
and the browser console stays free of errors and warnings throughout.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, expect, sync_playwright

from stack.demo_agent import DemoAgent
from tests.conftest import System
from tests.hub_proxy import serve_hub
from tests.test_page import CHROMIUM_ARGS

pytestmark = [pytest.mark.slow, pytest.mark.browser]

# The old UI's own colours for history cards (its inline styles).
GREEN, RED = "rgb(76, 175, 80)", "rgb(244, 67, 54)"


@pytest.fixture(scope="module")
def hub_url(system: System) -> Iterator[str]:
    configured = os.environ.get("OLD_UI_DIST")
    if not configured or not (Path(configured) / "index.html").is_file():
        pytest.skip("OLD_UI_DIST is not a built old UI (see this module's docstring)")
    with serve_hub(Path(configured), system.api_url) as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        pytest.skip("chromium is not installed")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def old_ui(browser: Browser, hub_url: str) -> Iterator[tuple[Page, list[str]]]:
    """The old UI opened through the hub; what its console said that was not info."""
    context = browser.new_context(viewport={"width": 1200, "height": 900}, base_url=hub_url)
    page = context.new_page()
    problems: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type in ("error", "warning"):
            problems.append(f"{message.type}: {message.text}")

    page.on("console", on_console)
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.on(
        "response",
        lambda r: problems.append(f"HTTP {r.status} {r.request.method} {r.url}")
        if r.status >= 400
        else None,
    )
    # alert("Flow execution started") and confirm("Delete ...?"): a user clicks OK.
    page.on("dialog", lambda dialog: dialog.accept())
    page.goto("/ext/automation_memory/")
    expect(page.locator(".healthz")).to_have_text("Status: Connected")
    yield page, problems
    context.close()


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:6]}"


def border_colour(locator: Any) -> str:
    return str(locator.evaluate("el => getComputedStyle(el).borderLeftColor"))


def test_memories(old_ui: tuple[Page, list[str]], api: httpx.Client):
    page, problems = old_ui
    text = f"The user likes {uuid.uuid4().hex[:6]} tea"
    page.get_by_placeholder("Enter memory content...").fill(text)
    page.get_by_role("button", name="Add Memory").click()
    item = page.locator(".item").filter(has_text=text)
    expect(item).to_be_visible()
    memory_id = next(m["id"] for m in api.get("/api/memories").json() if m["content"] == text)
    expect(item.locator(".item-title")).to_have_text(f"Memory #{memory_id}")

    item.get_by_role("button", name="Delete").click()
    expect(item).to_have_count(0)
    assert text not in {m["content"] for m in api.get("/api/memories").json()}
    assert problems == []


def test_task_flows_run_live_and_land_in_the_history(
    old_ui: tuple[Page, list[str]], api: httpx.Client, fake_agent: DemoAgent
):
    page, problems = old_ui
    page.get_by_role("button", name="Task Flows").click()
    name = unique("old_ui_flow")

    # Add New Flow: the agent menu lists names (objects would blank the whole page).
    page.get_by_role("button", name="Add New Flow").click()
    form = page.locator(".item").filter(has=page.get_by_role("button", name="Save Flow"))
    agent_menu = form.locator("select")
    expect(agent_menu.locator("option")).to_have_text(["default", "demo-echo"])
    form.get_by_placeholder("e.g., morning_routine").fill(name)
    agent_menu.select_option("demo-echo")
    form.get_by_placeholder("Prompt 1").fill("one")
    form.get_by_role("button", name="Add Prompt").click()
    form.get_by_placeholder("Prompt 2").fill("two")
    form.get_by_role("button", name="Save Flow").click()
    card = page.locator(".item-list > .item").filter(has_text=name)
    expect(card.locator(".prompts-list li")).to_have_text(["1. one", "2. two"])
    expect(card.locator(".agent-badge")).to_have_text("demo-echo")

    # Edit: a slow middle prompt (under the tests' 3 s agent timeout), so the run can be
    # watched across at least one of the old UI's 2 s polls.
    card.get_by_role("button", name="Edit").click()
    # While edited, the name is only in an input: find the card by its Save button.
    editing = page.locator(".item-list > .item").filter(
        has=page.get_by_role("button", name="Save Changes")
    )
    expect(editing.get_by_placeholder("e.g., morning_routine")).to_have_value(name)
    editing.get_by_placeholder("Prompt 2").fill("two [delay=2.5]")
    editing.get_by_role("button", name="Add Prompt").click()
    editing.get_by_placeholder("Prompt 3").fill("three")
    editing.get_by_role("button", name="Save Changes").click()
    expect(card.locator(".prompts-list li")).to_have_text(
        ["1. one", "2. two [delay=2.5]", "3. three"]
    )

    # Run: live in "Running Flows" with its progress, the prompt in flight and the last answer.
    card.get_by_role("button", name="Run").click()
    expect(page.get_by_role("heading", name="⚡ Running Flows (1)")).to_be_visible(timeout=15_000)
    running = page.locator(".item").filter(has_text=name).filter(has_text="Current Prompt:")
    expect(running).to_contain_text("Prompt 1/3", timeout=15_000)
    expect(running).to_contain_text("two [delay=2.5]")
    expect(running).to_contain_text("Echo: one")
    bar = running.locator("div[style*='transition']")
    assert bar.evaluate("el => el.style.width").startswith("33.3")

    # Finished: out of Running Flows, first in the history, green, 3/3, with its results.
    expect(page.get_by_role("heading", name="📊 Recent Flow Executions")).to_be_visible(
        timeout=30_000
    )
    done = page.locator(".item").filter(has_text=name).filter(has_text="completed").first
    expect(done).to_contain_text("✓ completed")
    expect(done).to_contain_text("3/3 prompts")
    assert border_colour(done) == GREEN

    # A failing run: red, with the error and its count of prompts attempted.
    failing = unique("old_ui_failing")
    flow = api.post(
        "/api/task_flows", json={"call_name": failing, "prompts": ["ok", "boom [fail=400]"]}
    ).json()
    page.get_by_role("button", name="Memories").click()  # the list reloads on a tab switch
    page.get_by_role("button", name="Task Flows").click()
    page.locator(".item-list > .item").filter(has_text=failing).get_by_role(
        "button", name="Run"
    ).click()
    failed = page.locator(".item").filter(has_text=failing).filter(has_text="failed").first
    expect(failed).to_contain_text("✗ failed", timeout=30_000)
    expect(failed).to_contain_text("2/2 prompts")
    expect(failed).to_contain_text("Error: Prompt 2 of 2 failed")
    assert border_colour(failed) == RED

    # Show All: every recent execution, with View Results per prompt.
    page.get_by_role("button", name="Show All").click()
    history = page.locator("h3", has_text="All Recent Executions").locator("..")
    entry = history.locator(".item").filter(has_text=failing).first
    entry.locator("summary", has_text="View Results (2)").click()
    expect(entry).to_contain_text("Prompt 1: ok")
    expect(entry).to_contain_text("Echo: ok")
    expect(entry).to_contain_text("Prompt 2: boom [fail=400]")
    expect(entry).to_contain_text("HTTP 400")

    # Delete (confirmed): gone from the list; its history stays.
    card.get_by_role("button", name="Delete").click()
    expect(page.locator(".item-list > .item").filter(has_text=name)).to_have_count(0)
    api.delete(f"/api/task_flows/{flow['id']}")
    assert problems == []


def test_scheduled_prompts(old_ui: tuple[Page, list[str]], api: httpx.Client):
    page, problems = old_ui
    page.get_by_role("button", name="Scheduled Tasks").click()
    prompt = f"Water the plants {uuid.uuid4().hex[:6]}"

    page.get_by_role("button", name="Add New Schedule").click()
    form = page.locator(".item").filter(has=page.get_by_role("button", name="Save Schedule"))
    form.locator("input[type=time]").fill("07:30")
    form.get_by_label("Mon").check()
    form.get_by_label("Wed").check()
    form.locator("select").select_option("demo-echo")
    form.get_by_placeholder("Enter prompt to execute...").fill(prompt)
    form.get_by_role("button", name="Save Schedule").click()

    item = page.locator(".item-list > .item").filter(has_text=prompt)
    expect(item.locator(".item-title")).to_have_text("07:30")
    expect(item).to_contain_text("Mon, Wed")
    expect(item.locator(".agent-badge")).to_have_text("demo-echo")
    stored = next(s for s in api.get("/api/scheduled_prompts").json() if s["prompt"] == prompt)
    assert stored["cron"] == "30 7 * * 1,3" and stored["enabled"] is True
    assert stored["deployment_id"] is not None

    item.get_by_role("button", name="Disable").click()
    expect(item).to_contain_text("(disabled)")
    expect(item.get_by_role("button", name="Enable")).to_be_visible()
    assert api.get(f"/api/scheduled_prompts/{stored['id']}").json()["enabled"] is False

    item.get_by_role("button", name="Edit").click()
    editing = page.locator(".item-list > .item").filter(
        has=page.get_by_role("button", name="Save Changes")
    )
    editing.locator("input[type=time]").fill("18:05")
    editing.get_by_label("Schedule is enabled").check()
    editing.get_by_role("button", name="Save Changes").click()
    expect(item.locator(".item-title")).to_have_text("18:05")
    expect(item).not_to_contain_text("(disabled)")
    edited = api.get(f"/api/scheduled_prompts/{stored['id']}").json()
    assert edited["cron"] == "5 18 * * 1,3" and edited["enabled"] is True

    item.get_by_role("button", name="Delete").click()
    expect(item).to_have_count(0)
    assert api.get(f"/api/scheduled_prompts/{stored['id']}").status_code == 404
    assert problems == []
