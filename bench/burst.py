"""Bursts and sustained load, and the worker's memory per concurrent run.

- burst: 50 runs of 5 prompts (200 ms agent) triggered at once (concurrent POSTs): the time
  from the first POST until the last execution completed;
- peak RSS per concurrent run: (peak VmRSS of the worker during the burst - its VmRSS just
  before) / 50, sampled from /proc every 50 ms;
- sustained: 500 runs of 5 prompts (50 ms agent) submitted as fast as the API takes them
  (10 concurrent clients): completed runs per second from the first POST to the last
  completion, and how many runs are stuck (not final after a generous deadline).

Baseline: the same runs triggered at once through its channel, the same sampling of its RSS.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from bench.baseline_client import Baseline, new_keys, trigger
from bench.stats import Row, cpu_per_run, fmt, ms
from bench.system import (
    FINAL,
    CpuMeter,
    RssSampler,
    System,
    api_client,
    connect,
    create_flow,
    post_run,
    read_rss_kb,
    settle,
    wait_final,
)

BURST_TARGET_S = 6.0
RSS_TARGET_MB = 2.0
PREFECT_ACTIVE = ["SCHEDULED", "PENDING", "RUNNING", "CANCELLING", "PAUSED"]


@dataclass
class Outcome:
    started_at: float
    ended_at: float  # the last completion seen (or the deadline)
    completed: int
    failed: int
    stuck: int
    submitted_at: float = float("nan")  # when the last POST was answered
    rss_idle_kb: int = 0
    rss_peak_kb: int = 0
    stuck_in_prefect: int | None = None
    top_error: str = ""
    cpu: str = ""
    cpu_spent: dict[str, float] = field(default_factory=dict)
    # CPU spent until Prefect also recorded every task run (its services digest the
    # engines' events after the executions end), and how long after the last completion.
    cpu_digested: dict[str, float] = field(default_factory=dict)
    digested_after_s: float | None = None

    @property
    def elapsed(self) -> float:
        return self.ended_at - self.started_at


def _outcome(started_at: float, rows: dict[Any, dict[str, Any]], expected: int) -> Outcome:
    done = [r for r in rows.values() if r["status"] in FINAL]
    ends = [r["completed_at"].timestamp() for r in done if r["completed_at"] is not None]
    errors = Counter(str(r["error"])[:120] for r in done if r["status"] != "completed")
    top_error = ""
    if errors:
        text, count = errors.most_common(1)[0]
        top_error = f"; most common error ({count}x): {text}"
    return Outcome(
        top_error=top_error,
        started_at=started_at,
        ended_at=max(ends) if ends else time.time(),
        completed=sum(r["status"] == "completed" for r in done),
        failed=sum(r["status"] != "completed" for r in done),
        stuck=expected - len(done),
    )


async def _settled_rss(pid: int) -> int:
    await asyncio.sleep(1.0)
    return read_rss_kb(pid)[0]


async def _with_rss(pid: int, work: Callable[[], Awaitable[Outcome]]) -> Outcome:
    idle = await _settled_rss(pid)
    sampler = RssSampler(pid)
    sampler.start()
    try:
        outcome = await work()
    finally:
        await sampler.stop()
    outcome.rss_idle_kb, outcome.rss_peak_kb = idle, sampler.peak_kb
    return outcome


async def _post_many(
    client: httpx.AsyncClient, flow_id: int, count: int, parallel: int
) -> tuple[list[int], float]:
    """POST `count` runs with at most `parallel` in flight; return ids and last answer time."""
    queue = list(range(count))
    ids: list[int] = []
    last = 0.0

    async def submitter() -> None:
        nonlocal last
        while queue:
            queue.pop()
            launched = await post_run(client, flow_id)
            ids.append(launched.execution_id)
            last = max(last, launched.answered_at)

    await asyncio.gather(*(submitter() for _ in range(min(parallel, count))))
    return ids, last


async def _prefect_not_final(system: System, flow_run_ids: list[str]) -> int | None:
    """Flow runs still active in Prefect; a run's execution ends a moment before its flow
    run does, so allow the engines up to 30 s to report their final states."""
    query = {
        "flow_runs": {"id": {"any_": flow_run_ids}, "state": {"type": {"any_": PREFECT_ACTIVE}}}
    }
    deadline = time.monotonic() + 30
    count: int | None = None
    async with httpx.AsyncClient(
        base_url=system.prefect_api_url, timeout=30, trust_env=False
    ) as client:
        while True:
            try:
                response = await client.post("/flow_runs/count", json=query)
                count = int(response.json()) if response.status_code == 200 else None
            except (httpx.HTTPError, ValueError):
                count = None
            if count == 0 or time.monotonic() > deadline:
                return count
            await asyncio.sleep(1.0)


async def _task_runs_recorded(system: System, flow_run_ids: list[str], expected: int) -> bool:
    """Whether Prefect lists `expected` completed task runs of these flow runs within 60 s:
    the task-run recorder writes them from the engines' events, after the runs end."""
    query = {
        "flow_runs": {"id": {"any_": flow_run_ids}},
        "task_runs": {"state": {"type": {"any_": ["COMPLETED"]}}},
    }
    deadline = time.monotonic() + 60
    async with httpx.AsyncClient(
        base_url=system.prefect_api_url, timeout=30, trust_env=False
    ) as client:
        while time.monotonic() < deadline:
            try:
                response = await client.post("/task_runs/count", json=query)
                if response.status_code == 200 and int(response.json()) >= expected:
                    return True
            except (httpx.HTTPError, ValueError):
                pass
            await asyncio.sleep(0.2)
    return False


async def _ours(system: System, flow_id: int, count: int, parallel: int, timeout: float) -> Outcome:
    conn = await connect(system)
    try:
        meter = CpuMeter(system).start()
        async with api_client(system, connections=max(parallel, 1)) as client:
            started_at = time.time()
            ids, submitted_at = await _post_many(client, flow_id, count, parallel)
        rows = await wait_final(conn, ids, timeout=timeout, interval=0.1 if count <= 100 else 0.5)
        outcome = _outcome(started_at, rows, count)
        outcome.cpu_spent = meter.measure()[0]
        outcome.cpu = meter.stop()
        outcome.submitted_at = submitted_at
        flow_run_ids = [str(r["flow_run_id"]) for r in rows.values() if r.get("flow_run_id")]
        outcome.stuck_in_prefect = await _prefect_not_final(system, flow_run_ids)
        if await _task_runs_recorded(system, flow_run_ids, expected=5 * outcome.completed):
            outcome.cpu_digested = meter.measure()[0]
            outcome.digested_after_s = time.time() - outcome.ended_at
        return outcome
    finally:
        await conn.close()


async def _base(system: System, flow_id: int, count: int, timeout: float) -> Outcome:
    conn = await connect(system)
    try:
        keys = new_keys(count, "burst")
        meter = CpuMeter(system).start()
        started_at = await trigger(conn, flow_id, keys)
        rows = await wait_final(
            conn,
            keys,
            timeout=timeout,
            interval=0.1 if count <= 100 else 0.5,
            column="idempotency_key",
        )
        outcome = _outcome(started_at, rows, count)
        outcome.cpu_spent = meter.measure()[0]
        outcome.cpu = meter.stop()
        return outcome
    finally:
        await conn.close()


def _per_run_mb(outcome: Outcome, runs: int) -> float:
    return (outcome.rss_peak_kb - outcome.rss_idle_kb) / 1024 / runs


async def measure(
    system: System, baseline: Baseline, *, burst: int, sustained: int, sustained_timeout: float
) -> list[Row]:
    tag = uuid.uuid4().hex[:8]
    async with api_client(system) as client:
        burst_flow = await create_flow(
            client, "burst", [f"bench burst-{tag} #{k + 1}# [delay=0.2]" for k in range(5)]
        )
        steady_flow = await create_flow(
            client, "sustained", [f"bench steady-{tag} #{k + 1}# [delay=0.05]" for k in range(5)]
        )
    worker_pid = system.worker.pid
    assert worker_pid is not None
    ours = await _with_rss(worker_pid, lambda: _ours(system, burst_flow, burst, burst, 120))
    system.agent.log.clear()
    await settle(timeout=10)
    base = await _with_rss(baseline.pid, lambda: _base(system, burst_flow, burst, 120))
    system.agent.log.clear()
    _, worker_hwm = read_rss_kb(worker_pid)
    await settle(timeout=10)
    rows = [
        Row(
            f"burst: {burst} runs x 5 prompts (200 ms agent) at once, all done",
            "<= 6 s",
            f"{ours.elapsed:.2f} s",
            f"{base.elapsed:.2f} s",
            ours.elapsed <= BURST_TARGET_S and ours.stuck == 0 and ours.failed == 0,
            f"{ours.completed} completed, {ours.failed} failed, {ours.stuck} not final; "
            f"POSTs answered after {ms(ours.submitted_at - ours.started_at)}; "
            f"{ours.cpu}; baseline {base.cpu}{ours.top_error}",
        ),
        Row(
            "  burst: CPU per 5-prompt run",
            "-",
            cpu_per_run(ours.cpu_spent, burst),
            cpu_per_run(base.cpu_spent, burst),
            None,
            "CPU-s of each process during the burst / runs",
        ),
        Row(
            "  burst: CPU per 5-prompt run, until Prefect recorded every task run",
            "-",
            cpu_per_run(ours.cpu_digested, burst) if ours.cpu_digested else "not recorded in 60 s",
            "-",
            None,
            "the same, up to when Prefect listed all task runs completed"
            + (
                f" ({ours.digested_after_s:.1f} s after the last execution ended)"
                if ours.digested_after_s is not None
                else ""
            ),
        ),
        Row(
            "peak worker RSS per concurrent run (burst)",
            "<= 2 MB",
            f"{_per_run_mb(ours, burst):.2f} MB",
            f"{_per_run_mb(base, burst):.2f} MB",
            _per_run_mb(ours, burst) <= RSS_TARGET_MB,
            f"worker idle {ours.rss_idle_kb / 1024:.0f} MB, peak {ours.rss_peak_kb / 1024:.0f} MB, "
            f"VmHWM {worker_hwm / 1024:.0f} MB; baseline idle {base.rss_idle_kb / 1024:.0f} MB",
        ),
    ]
    ours = await _ours(system, steady_flow, sustained, 10, sustained_timeout)
    system.agent.log.clear()
    await settle(timeout=20)
    base = await _base(system, steady_flow, sustained, sustained_timeout)
    system.agent.log.clear()
    accepted = sustained / max(ours.submitted_at - ours.started_at, 1e-9)
    rate = ours.completed / ours.elapsed if ours.elapsed > 0 else float("nan")
    base_rate = base.completed / base.elapsed if base.elapsed > 0 else float("nan")
    prefect_note = (
        f"; Prefect: {ours.stuck_in_prefect} flow runs not final 30 s later"
        if ours.stuck_in_prefect is not None
        else ""
    )
    rows += [
        Row(
            f"sustained: {sustained} runs x 5 prompts (50 ms agent), runs/s",
            "all completed",
            fmt(rate, " runs/s", 2),
            fmt(base_rate, " runs/s", 1),
            ours.failed == 0 and ours.stuck == 0,
            f"{ours.completed} completed in {ours.elapsed:.1f} s, {ours.failed} failed; "
            f"POSTs accepted at {accepted:.1f}/s; "
            f"{ours.cpu}; baseline {base.cpu}{ours.top_error}",
        ),
        Row(
            "  sustained: CPU per 5-prompt run",
            "-",
            cpu_per_run(ours.cpu_spent, sustained),
            cpu_per_run(base.cpu_spent, sustained),
            None,
            "CPU-s of each process during the sustained load / runs",
        ),
        Row(
            f"sustained: runs stuck (not final after {sustained_timeout:.0f} s)",
            "0",
            str(ours.stuck),
            str(base.stuck),
            ours.stuck == 0,
            prefect_note.lstrip("; "),
        ),
    ]
    return rows
