"""The web page at `/`, driven in Debian's chromium (headless) by Playwright.

Everything a user does goes through the page: creating, editing and running task flows,
watching the progress bar, the history with its colours and details, cancel and retry,
memories, and what the page shows when the API refuses something. The same real system
serves it as in the other tests (PostgreSQL, Prefect, worker, API, fake agent).

Screenshots go to a temporary folder, or to `TASKFLOWS_SCREENSHOTS` (for example
`docs/screenshots`) when that is set.
"""

from __future__ import annotations

import os
import re
import shutil
import statistics
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import APIResponse, Browser, Locator, Page, Route, expect, sync_playwright

from stack.demo_agent import AgentBehaviour, DemoAgent
from tests.conftest import System, wait_for_execution

pytestmark = [pytest.mark.slow, pytest.mark.browser]

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
GREEN, RED, BLUE = "rgb(26, 127, 55)", "rgb(207, 34, 46)", "rgb(9, 105, 218)"
# Records every change of a progress bar: its value, when, and its card's height.
WATCH_PROGRESS = """() => {
  window.__progress = [];
  const seen = new Map();
  const record = () => {
    for (const bar of document.querySelectorAll('#running .progress')) {
      const card = bar.closest('li');
      const value = Number(bar.getAttribute('aria-valuenow'));
      if (seen.get(card.dataset.key) === value) continue;
      seen.set(card.dataset.key, value);
      window.__progress.push({
        id: Number(card.dataset.key), value, at: Date.now(),
        height: card.getBoundingClientRect().height,
      });
    }
  };
  new MutationObserver(record).observe(document.querySelector('#running'), {
    subtree: true, childList: true, attributes: true, attributeFilter: ['aria-valuenow'],
  });
}"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        pytest.skip(
            "chromium is not installed: `apt-get install -y chromium` (make test does it as root)"
        )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def open_page(browser: Browser, system: System) -> Iterator[Any]:
    """`open_page(width=1200)` opens `/` in a fresh browser context; JS errors fail the test."""
    contexts = []
    errors: list[str] = []

    def open_(
        width: int = 1200,
        height: int = 900,
        path: str = "/",
        dark: bool = False,
        fake_clock: bool = False,
    ) -> Page:
        context = browser.new_context(
            viewport={"width": width, "height": height},
            base_url=system.api_url,
            color_scheme="dark" if dark else "light",
        )
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda error: errors.append(str(error)))
        if fake_clock:
            page.clock.install()  # the page's timers, under the test's control
        page.goto(path)
        expect(page.locator("#live")).to_have_text("Live")
        return page

    yield open_
    for context in contexts:
        context.close()
    assert not errors, f"JavaScript errors in the page: {errors}"


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    configured = os.environ.get("TASKFLOWS_SCREENSHOTS")
    folder = Path(configured) if configured else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def running_card(page: Page, name: str) -> Locator:
    return page.locator("#running > li").filter(has_text=name)


def history_row(page: Page, name: str) -> Locator:
    return page.locator("#history > li").filter(has_text=name)


def history_row_of(page: Page, execution_id: int) -> Locator:
    return page.locator(f'#history > li[data-key="{execution_id}"]')


def show_history(page: Page) -> None:
    """Open History and wait until its first page is shown (rows, or "No runs yet")."""
    page.get_by_role("button", name="Show history").click()
    expect(page.get_by_role("button", name="Hide history")).to_have_attribute(
        "aria-expanded", "true"
    )
    # Until then a run started by the test could still arrive with the first page.
    expect(page.locator("#history > li, #history-empty:not([hidden])").first).to_be_visible()


def color_of(locator: Locator) -> str:
    return str(locator.evaluate("el => getComputedStyle(el).color"))


def assert_no_horizontal_overflow(page: Page) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    viewport = page.evaluate("window.innerWidth")
    assert width <= viewport, f"the page is {width} px wide in a {viewport} px window"


# --- screenshots first, while the lists are short ------------------------------------------


def test_screenshots_of_runs_in_progress_history_and_mobile(
    open_page, api: httpx.Client, fake_agent: DemoAgent, make_task_flow, shots: Path
):
    standup = make_task_flow(
        call_name=unique("daily-standup"),
        agent="demo-echo",
        description="Summarise yesterday's merged pull requests for the standup.",
        prompts=[
            "List the pull requests merged yesterday.",
            "Group them by area.",
            "Write a five-line summary.",
            "Suggest one topic for today's standup.",
        ],
    )
    triage = make_task_flow(
        call_name=unique("triage-new-issues"),
        prompts=["Read the new issues.", "Label each one.", "Draft replies for the urgent ones."],
    )
    report = make_task_flow(
        call_name=unique("weekly-report"),
        prompts=["Collect the metrics.", "Compare with last week [fail=400]", "Write the report."],
    )
    # A finished history: one completed, one failed.
    done = api.post(f"/api/task_flows/{triage['id']}/run").json()["execution_id"]
    failed = api.post(f"/api/task_flows/{report['id']}/run").json()["execution_id"]
    wait_for_execution(api, done)
    wait_for_execution(api, failed)

    fake_agent.behaviour = AgentBehaviour(delay_s=2.5)  # under AGENT_TIMEOUT_S (3 s)
    page = open_page(width=1200, height=1000)
    page.get_by_role("button", name=f"Run {standup['call_name']}").click()
    page.get_by_role("button", name=f"Run {triage['call_name']}").click()
    card = running_card(page, standup["call_name"])
    expect(card.get_by_role("progressbar")).to_have_attribute("aria-valuenow", "25", timeout=15000)
    expect(running_card(page, triage["call_name"]).get_by_role("progressbar")).to_have_attribute(
        "aria-valuenow", "33", timeout=15000
    )
    show_history(page)
    page.evaluate("document.querySelectorAll('.toast').forEach(toast => toast.remove())")
    page.evaluate("window.scrollTo(0, 0)")
    page.wait_for_timeout(400)  # the progress bar's transition
    page.screenshot(path=shots / "running.png", full_page=True)

    history_row_of(page, failed).get_by_role("button", name="Details").click()
    history_row_of(page, done).get_by_role("button", name="Details").click()
    expect(history_row_of(page, failed).locator(".result")).to_have_count(3)
    page.set_viewport_size({"width": 1200, "height": 1400})
    page.locator('section[aria-labelledby="history-title"]').evaluate("el => el.scrollIntoView()")
    page.screenshot(path=shots / "history.png")

    # A page opened now shows running runs only: on a busy machine the first ones may have
    # ended by now, so each later page gets a run of its own.
    api.post(f"/api/task_flows/{standup['id']}/run")
    dark = open_page(width=1200, height=760, dark=True)
    expect(running_card(dark, standup["call_name"]).first).to_be_visible(timeout=15000)
    dark.wait_for_timeout(400)
    dark.screenshot(path=shots / "running-dark.png")

    page.get_by_role("button", name=f"Edit {standup['call_name']}").click()
    page.locator("#flow-form").screenshot(path=shots / "editor.png")

    api.post(f"/api/task_flows/{standup['id']}/run")
    mobile = open_page(width=360, height=800)
    expect(running_card(mobile, standup["call_name"]).first).to_be_visible(timeout=15000)
    assert_no_horizontal_overflow(mobile)
    mobile.screenshot(path=shots / "mobile.png", full_page=True)


# --- the seed's "Usage": create, run, watch, history -----------------------------------------


def test_create_a_flow_run_it_watch_the_progress_and_find_it_completed_in_history(
    open_page, api: httpx.Client, fake_agent: DemoAgent
):
    name = unique("page-flow")
    page = open_page()
    page.get_by_role("button", name="New task flow").click()
    page.get_by_label("Name", exact=True).fill(name)
    page.get_by_label("Agent").select_option("demo-echo")
    page.get_by_label("Prompt 1", exact=True).fill("Plan the day [delay=0.8]")
    page.get_by_role("button", name="Add prompt").click()
    page.get_by_label("Prompt 2", exact=True).fill("Summarize it [delay=0.8]")
    page.get_by_role("button", name="Add prompt").click()
    page.get_by_label("Prompt 3", exact=True).fill("Wrap up [delay=0.8]")
    page.get_by_role("button", name="Move prompt 3 up").click()
    page.get_by_role("button", name="Save", exact=True).click()

    expect(page.get_by_role("heading", name=name)).to_be_visible()
    (flow,) = [f for f in api.get("/api/task_flows").json() if f["call_name"] == name]
    assert flow["agent"] == "demo-echo"
    prompts = ["Plan the day [delay=0.8]", "Wrap up [delay=0.8]", "Summarize it [delay=0.8]"]
    assert flow["prompts"] == prompts

    page.evaluate(WATCH_PROGRESS)
    page.get_by_role("button", name=f"Run {name}").click()
    card = running_card(page, name)
    expect(card).to_be_visible()
    expect(card.locator('[data-f="prompt"]')).to_contain_text("Plan the day")
    expect(card.locator('[data-f="response"]')).to_contain_text(
        re.compile(r"^Echo.*: Plan the day$"), timeout=10000
    )
    expect(card.get_by_role("link", name="Open in Prefect")).to_have_attribute(
        "href", re.compile(r"/runs/flow-run/[0-9a-f-]{36}$")
    )
    execution_id = int(card.get_attribute("data-key") or 0)
    # When it ends, the card stays and says so, with the run's duration, for about 10 s.
    outcome = card.locator('[data-f="outcome"]')
    expect(outcome).to_have_text(re.compile(r"^Completed in \d+(\.\d)? s\.$"), timeout=30000)
    assert color_of(outcome) == GREEN
    expect(card.locator(".badge")).to_have_text("completed")
    expect(card.get_by_role("button", name="Cancel")).to_be_hidden()
    ended_at = time.monotonic()
    expect(card).to_have_count(0, timeout=20000)
    assert time.monotonic() - ended_at > 5, "the ended card left before anyone could read it"

    progress = [p for p in page.evaluate("window.__progress") if p["id"] == execution_id]
    values = [p["value"] for p in progress]
    assert values[:1] == [0] and {33, 67} <= set(values), f"the bar moved: {values}"
    assert values == sorted(values)
    heights = {p["height"] for p in progress if p["value"] < 100}
    assert len(heights) == 1, f"the card kept its size while results came in: {heights}"
    _report_page_latency(fake_agent, prompts, progress)

    show_history(page)
    row = history_row(page, name)
    badge = row.locator(".badge").first
    expect(badge).to_have_text("completed")
    assert color_of(badge) == GREEN
    expect(row.locator('[data-f="progress"]')).to_have_text("3 / 3 prompts")
    expect(row.locator('[data-f="duration"]')).to_have_text(re.compile(r"^\d+(\.\d)? s$"))
    row.get_by_role("button", name="Details").click()
    results = row.locator(".result")
    expect(results).to_have_count(3)
    expect(results.nth(1).locator('[data-f="response"]')).to_have_text(
        re.compile(r"^Echo.*: Wrap up$")
    )
    expect(results.nth(0).locator('[data-f="stats"]')).to_have_text(
        re.compile(r"^\d+ ms · \d+ tokens \(\d+ in, \d+ out\)$")
    )


def _report_page_latency(
    agent: DemoAgent, prompts: list[str], progress: list[dict[str, Any]]
) -> None:
    answered = [
        (request.received_at + 0.8) * 1000
        for request in agent.requests
        if request.prompt in prompts
    ]
    shown = [p["at"] for p in progress if p["value"] > 0]
    latencies = [at - answer for at, answer in zip(shown, answered, strict=False)]
    print(
        f"\npage latency, fake agent answer -> progress bar in the browser, {len(latencies)}"
        f" prompts: median {statistics.median(latencies):.0f} ms, max {max(latencies):.0f} ms"
    )


def test_the_answer_shows_while_the_agent_writes_it(
    open_page, make_task_flow, fake_agent: DemoAgent
):
    words = " ".join(f"word{n}" for n in range(40))
    flow = make_task_flow(prompts=[f"[chunkdelay=0.15] {words}"])
    page = open_page()
    page.get_by_role("button", name=f"Run {flow['call_name']}").click()
    card = running_card(page, flow["call_name"])
    response = card.locator('[data-f="response"]')
    expect(response).to_contain_text("word3", timeout=15000)
    expect(card.locator('[data-f="response-label"]')).to_have_text("Writing…")
    assert "word39" not in (response.text_content() or ""), "shown before the answer is done"
    expect(card).to_have_count(0, timeout=20000)


def test_a_failing_flow_shows_red_with_its_error(open_page, make_task_flow, fake_agent: DemoAgent):
    flow = make_task_flow(prompts=["this one works", "this one breaks [fail=400]"])
    page = open_page()
    show_history(page)
    page.get_by_role("button", name=f"Run {flow['call_name']}").click()

    row = history_row(page, flow["call_name"])
    badge = row.locator(".badge").first
    expect(badge).to_have_text("failed", timeout=20000)
    assert color_of(badge) == RED
    error = row.locator('[data-f="error"]')
    expect(error).to_be_visible()
    expect(error).to_contain_text("Prompt 2 of 2 failed")
    expect(error).to_contain_text("HTTP 400")
    assert color_of(error) == RED
    expect(row.get_by_role("button", name="Retry")).to_be_visible()

    row.get_by_role("button", name="Details").click()
    second = row.locator(".result").nth(1)
    expect(second.locator(".badge")).to_have_text("failed")
    expect(second.locator('[data-f="error"]')).to_contain_text("HTTP 400")
    assert color_of(second.locator('[data-f="error"]')) == RED


# --- how runs end: the card stays and says so ----------------------------------------------


def test_a_run_that_fails_at_once_stays_on_its_card_with_the_error_and_retry(
    open_page, api: httpx.Client, make_task_flow, fake_agent: DemoAgent
):
    flow = make_task_flow(prompts=["first of all"])
    page = open_page()
    fake_agent.behaviour = AgentBehaviour(fail_status=400)
    page.get_by_role("button", name=f"Run {flow['call_name']}").click()
    card = running_card(page, flow["call_name"])
    outcome = card.locator('[data-f="outcome"]')
    expect(outcome).to_contain_text("Prompt 1 of 1 failed", timeout=20000)
    expect(outcome).to_contain_text("HTTP 400")
    assert color_of(outcome) == RED
    expect(card.locator(".badge")).to_have_text("failed")
    failed_id = int(card.get_attribute("data-key") or 0)

    fake_agent.behaviour = AgentBehaviour()  # the agent is fixed: Retry on the card
    card.get_by_role("button", name=re.compile("^Retry")).click()
    expect(page.locator(f'#running > li[data-key="{failed_id}"]')).to_have_count(0)
    retry = running_card(page, flow["call_name"])
    expect(retry.locator('[data-f="outcome"]')).to_contain_text("Completed in", timeout=20000)
    retry_id = int(retry.get_attribute("data-key") or 0)
    assert api.get(f"/api/executions/{retry_id}").json()["retry_of"] == failed_id
    # An open History shows the run at the top at once, while its card is still up.
    show_history(page)
    expect(page.locator("#history > li").first).to_have_attribute("data-key", str(retry_id))
    retry.get_by_role("button", name=re.compile("^Dismiss")).click()
    expect(retry).to_have_count(0)


def test_a_run_that_ends_in_a_hidden_tab_is_announced_when_it_comes_back(
    open_page, api: httpx.Client, make_task_flow, fake_agent: DemoAgent
):
    flow = make_task_flow(prompts=["slowly [delay=1.5]"])
    page = open_page()
    page.get_by_role("button", name=f"Run {flow['call_name']}").click()
    card = running_card(page, flow["call_name"])
    expect(card.locator(".badge")).to_have_text("running", timeout=15000)
    execution_id = int(card.get_attribute("data-key") or 0)
    set_hidden = """hidden => {
      Object.defineProperty(document, 'hidden', { configurable: true, get: () => hidden });
      document.dispatchEvent(new Event('visibilitychange'));
    }"""
    page.evaluate(set_hidden, True)
    expect(page.locator("#live")).to_have_text("Paused")
    assert wait_for_execution(api, execution_id)["status"] == "completed"

    page.evaluate(set_hidden, False)
    expect(card.locator('[data-f="outcome"]')).to_contain_text("Completed in", timeout=10000)
    expect(card.locator(".badge")).to_have_text("completed")


def test_an_alert_link_opens_the_run_in_history_with_its_details(
    open_page, api: httpx.Client, make_task_flow, fake_agent: DemoAgent
):
    flow = make_task_flow(prompts=["follow the link"])
    execution_id = api.post(f"/api/task_flows/{flow['id']}/run").json()["execution_id"]
    assert wait_for_execution(api, execution_id)["status"] == "completed"
    # Alerts link to /#execution-<id> (deployments/alerts.py).
    page = open_page(path=f"/#execution-{execution_id}")
    row = history_row_of(page, execution_id)
    expect(row.locator(".result")).to_have_count(1)
    expect(row.locator('[data-f="response"]')).to_have_text("Echo: follow the link")
    expect(row.get_by_role("button", name="Details")).to_have_attribute("aria-expanded", "true")


# --- schedules ----------------------------------------------------------------------------


def test_schedules_on_the_page_set_edit_switch_off_and_remove(
    open_page, api: httpx.Client, make_task_flow
):
    flow = make_task_flow()
    url = f"/api/task_flows/{flow['id']}/schedule"
    page = open_page()
    row = page.locator("#flows > li").filter(has_text=flow["call_name"])
    expect(row.locator('[data-f="schedule"]')).to_have_text("")
    row.get_by_role("button", name=f"Schedule {flow['call_name']}").click()
    form = page.locator("#schedule-form")
    page.get_by_label("Cron", exact=True).fill("0 9 * * 1-5")
    page.get_by_label("Time zone").fill("Europe/Berlin")
    words = form.locator("#schedule-words")
    expect(words).to_have_text("weekdays at 09:00, Europe/Berlin")
    form.get_by_role("button", name="Save schedule").click()
    next_runs = form.locator("#schedule-next time")
    expect(next_runs).to_have_count(5)
    for text in next_runs.all_text_contents():
        assert "09:00" in text and not text.startswith(("Sat", "Sun")), text
    summary = row.locator('[data-f="schedule"]')
    expect(summary).to_contain_text("Next run")
    expect(summary).to_contain_text("weekdays at 09:00, Europe/Berlin")
    stored = api.get(url).json()
    assert (stored["cron"], stored["timezone"], stored["enabled"]) == (
        "0 9 * * 1-5",
        "Europe/Berlin",
        True,
    )

    # Edit it; the words follow the typing.
    page.get_by_label("Cron", exact=True).fill("30 6 * * *")
    expect(words).to_have_text("every day at 06:30, Europe/Berlin")
    form.get_by_role("button", name="Save schedule").click()
    expect(summary).to_contain_text("every day at 06:30")
    assert api.get(url).json()["cron"] == "30 6 * * *"

    # Switch it off and on again.
    form.get_by_role("button", name="Switch off").click()
    expect(summary).to_contain_text("Schedule off")
    expect(form.locator("#schedule-next li")).to_have_count(0)
    assert api.get(url).json()["enabled"] is False
    form.get_by_role("button", name="Switch on").click()
    expect(summary).to_contain_text("Next run")
    assert api.get(url).json()["enabled"] is True

    # What the API refuses, the form shows in the API's words.
    error = form.locator("#schedule-error")
    page.get_by_label("Cron", exact=True).fill("every day")
    form.get_by_role("button", name="Save schedule").click()
    expect(error).to_contain_text("cron must have 5 fields")
    page.get_by_label("Cron", exact=True).fill("0 7 * * *")
    page.get_by_label("Time zone").fill("Nowhere/Land")
    form.get_by_role("button", name="Save schedule").click()
    expect(error).to_contain_text("timezone must be an IANA time zone")
    assert api.get(url).json()["cron"] == "30 6 * * *"

    form.get_by_role("button", name="Remove schedule").click()
    expect(form).to_be_hidden()
    expect(summary).to_have_text("")
    assert api.get(url).status_code == 404


def test_crons_read_in_words(open_page):
    page = open_page()
    cases = {
        "0 9 * * 1-5": "weekdays at 09:00, UTC",
        "*/15 * * * *": "every 15 minutes, UTC",
        "0 * * * *": "every hour, UTC",
        "5 */2 * * *": "every 2 hours at minute 5, UTC",
        "0 8,17 * * *": "every day at 08:00 and 17:00, UTC",
        "0 10 * * 6,0": "weekends at 10:00, UTC",
        "0 9 * * mon,wed,fri": "on Mondays, Wednesdays and Fridays at 09:00, UTC",
        "0 0 1 * *": "on day 1 of the month at 00:00, UTC",
        "@daily": "every day at 00:00, UTC",
        "0 9 1-7 * 1#1": "cron “0 9 1-7 * 1#1”, UTC",
    }
    said = page.evaluate(
        """async cases => {
          const { describeCron } = await import('/static/js/cron.js');
          return Object.fromEntries(Object.keys(cases).map(c => [c, describeCron(c, 'UTC')]));
        }""",
        cases,
    )
    assert said == cases


# --- cancel and retry (the control endpoints) -------------------------------------------------


def test_cancel_a_running_flow_from_the_page(
    open_page, api: httpx.Client, make_task_flow, fake_agent: DemoAgent
):
    flow = make_task_flow(prompts=["take your time [delay=30]", "never sent"])
    page = open_page()
    show_history(page)
    page.get_by_role("button", name=f"Run {flow['call_name']}").click()
    card = running_card(page, flow["call_name"])
    expect(card.locator(".badge")).to_have_text("running", timeout=15000)
    assert color_of(card.locator(".badge")) == BLUE

    card.get_by_role("button", name="Cancel").click()
    expect(card.locator(".badge")).to_have_text("cancelled", timeout=10000)
    expect(card.locator('[data-f="outcome"]')).to_contain_text("Cancelled")
    expect(card.get_by_role("button", name=re.compile("^Retry"))).to_be_visible()
    card.get_by_role("button", name=re.compile("^Dismiss")).click()
    expect(card).to_have_count(0)
    row = history_row(page, flow["call_name"])
    expect(row.locator(".badge").first).to_have_text("cancelled")
    expect(row.get_by_role("button", name="Retry")).to_be_visible()
    execution_id = int(row.get_attribute("data-key") or 0)
    assert api.get(f"/api/executions/{execution_id}").json()["status"] == "cancelled"
    assert "never sent" not in fake_agent.prompts_received()


def test_retry_a_failed_flow_from_the_page_resumes_and_completes(
    open_page, api: httpx.Client, make_task_flow, fake_agent: DemoAgent
):
    flow = make_task_flow(prompts=["first", "second"])
    page = open_page()
    show_history(page)
    fake_agent.behaviour = AgentBehaviour(fail_status=400)
    page.get_by_role("button", name=f"Run {flow['call_name']}").click()
    failed = history_row(page, flow["call_name"]).filter(has_text="failed")
    expect(failed).to_have_count(1, timeout=20000)
    failed_id = int(failed.get_attribute("data-key") or 0)

    fake_agent.behaviour = AgentBehaviour()  # the agent is fixed
    failed.get_by_role("button", name="Retry").click()
    retry = history_row(page, f"retry of #{failed_id}")
    expect(retry.locator(".badge").first).to_have_text("completed", timeout=20000)
    retry_id = int(retry.get_attribute("data-key") or 0)
    assert retry_id > failed_id
    execution = api.get(f"/api/executions/{retry_id}").json()
    assert execution["retry_of"] == failed_id
    assert [r["response"] for r in execution["prompt_results"]] == ["Echo: first", "Echo: second"]


# --- editing, errors, memories -----------------------------------------------------------------


def test_an_edit_based_on_an_old_version_says_so_and_reloads(
    open_page, api: httpx.Client, make_task_flow
):
    flow = make_task_flow(prompts=["one", "two"])
    page = open_page()
    page.get_by_role("button", name=f"Edit {flow['call_name']}").click()
    page.get_by_label("Prompt 2", exact=True).fill("two, edited in the page")
    changed = api.patch(
        f"/api/task_flows/{flow['id']}",
        json={"description": "changed elsewhere", "version": flow["version"]},
    )
    assert changed.status_code == 200, changed.text

    page.get_by_role("button", name="Save", exact=True).click()
    error = page.locator("#flow-error")
    expect(error).to_contain_text("changed by someone else")
    assert api.get(f"/api/task_flows/{flow['id']}").json()["prompts"] == ["one", "two"]

    page.get_by_role("button", name="Reload the task flow").click()
    expect(page.get_by_label("Description")).to_have_value("changed elsewhere")
    page.get_by_label("Prompt 2", exact=True).fill("two, edited again")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator("#flow-form")).to_be_hidden()
    saved = api.get(f"/api/task_flows/{flow['id']}").json()
    assert saved["prompts"] == ["one", "two, edited again"]
    assert saved["description"] == "changed elsewhere"


def test_a_refused_save_shows_the_api_error_and_keeps_the_form(open_page, make_task_flow):
    taken = make_task_flow()
    page = open_page()
    page.get_by_role("button", name="New task flow").click()
    page.get_by_label("Name", exact=True).fill(taken["call_name"])
    page.get_by_label("Prompt 1", exact=True).fill("hello")
    page.get_by_role("button", name="Save", exact=True).click()

    expect(page.locator("#flow-error")).to_be_visible()
    expect(page.locator("#flow-error")).not_to_have_text("")
    expect(page.locator("#flow-form")).to_be_visible()
    expect(page.locator(".toast", has_text="Saved")).to_have_count(0)
    expect(page.get_by_role("heading", name=taken["call_name"], exact=True)).to_have_count(1)


def test_delete_asks_first_and_keeps_the_history(
    open_page, api: httpx.Client, make_task_flow, fake_agent: DemoAgent
):
    flow = make_task_flow(prompts=["remember me"])
    execution_id = api.post(f"/api/task_flows/{flow['id']}/run").json()["execution_id"]
    wait_for_execution(api, execution_id)
    page = open_page()
    delete = page.get_by_role("button", name=f"Delete {flow['call_name']}")

    delete.click()
    page.get_by_role("dialog").get_by_role("button", name="Cancel").click()
    assert api.get(f"/api/task_flows/{flow['id']}").status_code == 200

    delete.click()
    page.get_by_role("dialog").get_by_role("button", name="Delete").click()
    expect(page.get_by_role("heading", name=flow["call_name"])).to_have_count(0)
    assert api.get(f"/api/task_flows/{flow['id']}").status_code == 404
    show_history(page)
    expect(history_row_of(page, execution_id).locator(".badge").first).to_have_text("completed")


def test_memories_can_be_added_edited_and_deleted(open_page, api: httpx.Client):
    text = unique("Remember the release is on Friday")
    page = open_page(path="/#memories")
    page.get_by_label("New memory").fill(text)
    page.get_by_role("button", name="Add memory").click()
    item = page.locator("#memories > li").filter(has_text=text)
    expect(item).to_be_visible()

    item.get_by_role("button", name="Edit").click()
    item.get_by_role("textbox").fill(f"{text}, not Thursday")
    item.get_by_role("button", name="Save").click()
    expect(item.locator('[data-f="content"]')).to_have_text(f"{text}, not Thursday")
    assert f"{text}, not Thursday" in [m["content"] for m in api.get("/api/memories").json()]

    item.get_by_role("button", name="Delete").click()
    page.get_by_role("dialog").get_by_role("button", name="Delete").click()
    expect(item).to_have_count(0)
    assert not [m for m in api.get("/api/memories").json() if m["content"].startswith(text)]


# --- live updates: fallback and pausing --------------------------------------------------------


def test_without_the_stream_the_page_polls_and_still_shows_progress(
    browser: Browser, system: System, make_task_flow, fake_agent: DemoAgent
):
    flow = make_task_flow(prompts=["a [delay=0.5]", "b [delay=0.5]"])
    context = browser.new_context(base_url=system.api_url)
    try:
        page = context.new_page()
        page.route(
            "**/api/executions/stream*",
            lambda route: route.fulfill(status=503, json={"ok": False, "error": "no stream"}),
        )
        page.goto("/")
        expect(page.locator("#live")).to_have_text("Polling every 2 s")
        show_history(page)
        page.get_by_role("button", name=f"Run {flow['call_name']}").click()
        expect(running_card(page, flow["call_name"])).to_be_visible()
        expect(history_row(page, flow["call_name"]).locator(".badge").first).to_have_text(
            "completed", timeout=20000
        )
    finally:
        context.close()


def test_a_hidden_tab_stops_asking_and_catches_up_when_shown(
    open_page, api: httpx.Client, make_task_flow, fake_agent: DemoAgent
):
    flow = make_task_flow(prompts=["while nobody looks"])
    page = open_page(fake_clock=True)
    show_history(page)
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.evaluate(
        """hidden => {
          Object.defineProperty(document, 'hidden', { configurable: true, get: () => hidden });
          document.dispatchEvent(new Event('visibilitychange'));
        }""",
        True,
    )
    expect(page.locator("#live")).to_have_text("Paused")
    requests.clear()
    execution_id = api.post(f"/api/task_flows/{flow['id']}/run").json()["execution_id"]
    wait_for_execution(api, execution_id)
    # Fast-forward the page's clock past every timer it could have left (the 2 s poll, the
    # 10 s stream retry): nothing may fire a request.
    page.clock.run_for(15_000)
    assert requests == [], f"a hidden tab sent requests: {requests}"
    expect(history_row_of(page, execution_id)).to_have_count(0)

    page.evaluate(
        """hidden => {
          Object.defineProperty(document, 'hidden', { configurable: true, get: () => hidden });
          document.dispatchEvent(new Event('visibilitychange'));
        }""",
        False,
    )
    expect(page.locator("#live")).to_have_text("Live")
    expect(history_row_of(page, execution_id).locator(".badge").first).to_have_text("completed")


def test_history_read_while_a_run_goes_shows_it_ended_when_the_answer_comes_late(
    open_page, make_task_flow, fake_agent: DemoAgent
):
    """History's first page is read while a run is going, and its answer arrives after the
    stream said the run completed: the row shows how the run ended, not that older state."""
    flow = make_task_flow(prompts=["read while running [delay=1]"])
    page = open_page()
    held: list[tuple[Route, APIResponse]] = []
    # Read the page at once (the run is still going), answer the browser later.
    page.route("**/api/executions/recent*", lambda route: held.append((route, route.fetch())))
    page.get_by_role("button", name=f"Run {flow['call_name']}").click()
    card = running_card(page, flow["call_name"])
    expect(card.locator(".badge")).to_have_text("running")
    page.get_by_role("button", name="Show history").click()
    expect(card.locator(".badge")).to_have_text("completed", timeout=20000)
    assert len(held) == 1, "History asked for its first page once"
    route, response = held[0]
    execution_id = int(card.get_attribute("data-key") or 0)
    (read,) = [e for e in response.json() if e["id"] == execution_id]
    assert read["status"] == "running", "the page was read while the run was going"
    route.fulfill(response=response)
    expect(history_row_of(page, execution_id).locator(".badge").first).to_have_text("completed")


def test_load_more_shows_the_older_runs_of_the_history(
    open_page, api: httpx.Client, make_task_flow, fake_agent: DemoAgent
):
    flow = make_task_flow(prompts=["one of many"])
    started = [api.post(f"/api/task_flows/{flow['id']}/run").json() for _ in range(21)]
    for run in started:
        wait_for_execution(api, run["execution_id"])
    oldest = started[0]["execution_id"]  # 20 newer runs push it off the first page

    page = open_page()
    show_history(page)
    expect(history_row_of(page, started[-1]["execution_id"])).to_be_visible()
    expect(page.locator("#history > li")).to_have_count(20)
    expect(history_row_of(page, oldest)).to_have_count(0)
    more = page.get_by_role("button", name="Load more")
    more.click()
    expect(history_row_of(page, oldest)).to_be_visible()
    assert page.locator("#history > li").count() > 20
    # Every row is there once: the next page starts where the first ended.
    keys = page.locator("#history > li").evaluate_all("rows => rows.map(r => r.dataset.key)")
    assert len(keys) == len(set(keys))


# --- small screens and the keyboard --------------------------------------------------------------


def test_at_360_px_nothing_overflows_sideways(
    open_page, api: httpx.Client, make_task_flow, fake_agent: DemoAgent
):
    long_word = "x" * 300
    flow = make_task_flow(
        call_name=unique("a-rather-long-task-flow-name-that-keeps-going-and-going"),
        prompts=[f"{long_word} [size=400]", "slow [delay=3]"],
    )
    page = open_page(width=360, height=780)
    show_history(page)
    page.get_by_role("button", name=f"Run {flow['call_name']}").click()
    expect(running_card(page, flow["call_name"]).locator('[data-f="response"]')).to_contain_text(
        "Echo", timeout=15000
    )
    assert_no_horizontal_overflow(page)

    row = history_row(page, flow["call_name"])
    row.get_by_role("button", name="Details").click()
    expect(row.locator(".result")).to_have_count(2)
    assert_no_horizontal_overflow(page)

    page.get_by_role("button", name=f"Edit {flow['call_name']}").click()
    expect(page.get_by_label("Prompt 2", exact=True)).to_be_visible()
    assert_no_horizontal_overflow(page)
    page.get_by_role("tab", name="Memories").click()
    assert_no_horizontal_overflow(page)


def test_the_page_works_from_the_keyboard(open_page, make_task_flow, fake_agent: DemoAgent):
    flow = make_task_flow(prompts=["typed, not clicked"])
    page = open_page()
    run = page.get_by_role("button", name=f"Run {flow['call_name']}")
    run.focus()
    page.keyboard.press("Enter")
    page.get_by_role("button", name="Show history").focus()
    page.keyboard.press("Enter")
    row = history_row(page, flow["call_name"])
    expect(row.locator(".badge").first).to_have_text("completed", timeout=20000)
    row.get_by_role("button", name="Details").focus()
    page.keyboard.press("Space")
    expect(row.locator(".result")).to_have_count(1)
    # A visible focus ring on the focused button.
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline == "solid"

    page.get_by_role("tab", name="Task flows").focus()
    page.keyboard.press("ArrowRight")
    expect(page.get_by_role("tab", name="Memories")).to_be_focused()
    expect(page.get_by_role("tab", name="Memories")).to_have_attribute("aria-selected", "true")
