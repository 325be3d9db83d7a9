"""Start the whole system for a benchmark (stack.system, as the tests do) and stop it again.

PostgreSQL is `DATABASE_URL`'s server when it is set (fresh databases are created on it and
dropped afterwards), otherwise an embedded one in a temporary directory. Then a Prefect
server on that PostgreSQL, the real worker (`python -m worker`) and the real API
(uvicorn) as subprocesses, and the timed fake agent in this process, all on loopback.
What is the bench's own: that agent, and the trace hook in the worker and the API.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg.rows import dict_row

from bench.agent import FakeAgent, serve_agent
from stack.prefect_server import private_redis_database
from stack.supervisor import Child, Supervisor
from stack.system import System as RunningSystem
from stack.system import SystemOptions, start_system

FINAL = ("completed", "failed", "cancelled")
Row = dict[str, Any]


@dataclass
class System:
    """The running system, with what only the bench has: its timed agent and trace folder."""

    running: RunningSystem
    agent: FakeAgent
    trace_dir: Path | None = None

    @property
    def database_url(self) -> str:
        return self.running.database_url

    @property
    def prefect_api_url(self) -> str:
        return self.running.prefect_api_url

    @property
    def api_url(self) -> str:
        return self.running.api_url

    @property
    def supervisor(self) -> Supervisor:
        return self.running.supervisor

    @property
    def worker(self) -> Child:
        return self.running.worker()


def progress(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


@contextmanager
def bench_system(
    log_dir: Path,
    trace_dir: Path | None = None,
    extra_env: dict[str, str] | None = None,
    redis_url: str | None = None,
) -> Iterator[System]:
    """Start everything; on leaving the block (or an error, or Ctrl-C) stop all of it.

    With `trace_dir`, the worker and the API log each HTTP request and SQL statement they
    make there (bench/trace_hook/sitecustomize.py). `extra_env` is added to the worker's and
    the API's environment (to try a setting without changing code). With `redis_url` the
    Prefect server runs split over Redis, on a Redis database of its own; otherwise it is
    one process (REDIS_URL from the environment is set aside).
    """
    with ExitStack() as resources:
        private = resources.enter_context(private_redis_database(redis_url)) if redis_url else None
        if private:
            progress(f"Prefect server: split over Redis ({private})")
        # start_prefect_server takes the topology from REDIS_URL, like `make up`.
        resources.enter_context(_environment("REDIS_URL", private))
        yield from _bench_system(log_dir, trace_dir, extra_env)


@contextmanager
def _environment(name: str, value: str | None) -> Iterator[None]:
    """`name` set to `value` (or unset for None) in this process's environment, restored after."""
    before = os.environ.get(name)
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


def _bench_system(
    log_dir: Path, trace_dir: Path | None, extra_env: dict[str, str] | None
) -> Iterator[System]:
    work = Path(tempfile.mkdtemp(prefix="taskflows-bench-"))
    configured = os.environ.get("DATABASE_URL") or None
    where = "DATABASE_URL's server, fresh databases *_bench_*" if configured else "embedded"
    progress(f"PostgreSQL: {where}")

    def trace_env(name: str, env: Mapping[str, str]) -> dict[str, str]:
        return _trace_env(trace_dir, name, env) if name in ("worker", "api") else {}

    try:
        with serve_agent() as agent:
            options = SystemOptions(
                work_dir=work,
                log_dir=log_dir,
                database_url=configured,
                fresh_databases="bench",
                agent_url=agent.url,
                # `[delay=60]` prompts keep runs going during the API figures.
                env={"AGENT_TIMEOUT_S": "180", **(extra_env or {})},
                child_env=trace_env,
                api_ready_timeout=120,
                prefect_ready_timeout=180,
                progress=progress,
            )
            with start_system(options) as running:
                yield System(running, agent, trace_dir)
                progress("stopping the API, the worker and the Prefect server")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _trace_env(trace_dir: Path | None, name: str, env: Mapping[str, str]) -> dict[str, str]:
    if trace_dir is None:
        return {}
    trace_dir.mkdir(parents=True, exist_ok=True)
    hook = str(Path(__file__).resolve().parent / "trace_hook")
    inherited = env.get("PYTHONPATH", os.environ.get("PYTHONPATH", ""))
    path = os.pathsep.join(p for p in (hook, inherited) if p)
    return {"PYTHONPATH": path, "BENCH_TRACE_DIR": str(trace_dir), "BENCH_TRACE_NAME": name}


# -- helpers the figure groups share ---------------------------------------------------------


def api_client(system: System, *, connections: int = 100) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=system.api_url,
        timeout=httpx.Timeout(60.0),
        limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
        trust_env=False,  # loopback only: no proxy from the environment
    )


async def connect(system: System) -> psycopg.AsyncConnection[Row]:
    return await psycopg.AsyncConnection.connect(
        system.database_url, autocommit=True, row_factory=dict_row
    )


async def create_flow(
    client: httpx.AsyncClient, name: str, prompts: list[str], *, agent: str | None = None
) -> int:
    """Create a task flow (and its Prefect deployment) through the API; return its id."""
    body: dict[str, Any] = {"call_name": f"bench-{name}-{uuid.uuid4().hex[:6]}", "prompts": prompts}
    if agent is not None:
        body["agent"] = agent
    response = await client.post("/api/task_flows", json=body)
    if response.status_code not in (200, 201):
        raise RuntimeError(f"creating a task flow failed: {response.status_code} {response.text}")
    return int(response.json()["id"])


@dataclass
class Launched:
    execution_id: int
    flow_run_id: str | None
    posted_at: float  # time.time() just before the POST
    answered_at: float  # time.time() when its response arrived


async def post_run(client: httpx.AsyncClient, flow_id: int) -> Launched:
    posted_at = time.time()
    response = await client.post(f"/api/task_flows/{flow_id}/run")
    answered_at = time.time()
    if response.status_code != 200:
        raise RuntimeError(f"POST run failed: {response.status_code} {response.text}")
    body = response.json()
    return Launched(int(body["execution_id"]), body.get("flow_run_id"), posted_at, answered_at)


async def first_agent_request(
    system: System, tag: str, after: float, *, timeout: float = 30.0
) -> float:
    """When the fake agent first received a request carrying `tag` (sent after `after`)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        exchange = system.agent.log.first(tag, after)
        if exchange is not None:
            return exchange.received_at
        await asyncio.sleep(0.002)
    raise RuntimeError(f"no agent request for {tag} within {timeout:.0f} s")


async def wait_final(
    conn: psycopg.AsyncConnection[Row],
    ids: Sequence[int] | Sequence[str],
    *,
    timeout: float,
    interval: float = 0.05,
    column: str = "id",
) -> dict[Any, Row]:
    """Poll `flow_executions` (by `id` or `idempotency_key`) until every row is final or time
    runs out; return the last rows seen (possibly not all final: the caller counts)."""
    assert column in ("id", "idempotency_key")
    deadline = time.monotonic() + timeout
    rows: dict[Any, Row] = {}
    query = (
        "SELECT id, idempotency_key, status, error, queued_at, started_at, completed_at,"
        " current_prompt_index, total_prompts, flow_run_id"
        f" FROM flow_executions WHERE {column} = ANY(%s)"
    )
    while True:
        cursor = await conn.execute(query, (list(ids),))
        rows = {row[column]: row for row in await cursor.fetchall()}
        if len(rows) == len(ids) and all(r["status"] in FINAL for r in rows.values()):
            return rows
        if time.monotonic() > deadline:
            return rows
        await asyncio.sleep(interval)


def _cpu_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    with open("/proc/stat") as stat:
        fields = [int(v) for v in stat.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields) - idle, sum(fields)


async def settle(*, busy_below: float = 0.25, window: float = 1.0, timeout: float = 30.0) -> bool:
    """Wait until the machine is nearly idle (the Prefect server digests events for a while
    after a load), so one figure's backlog does not leak into the next. The threshold is a
    fraction of ALL cores. False if it stayed busy (other work on the machine)."""
    deadline = time.monotonic() + timeout
    while True:
        busy0, total0 = _cpu_ticks()
        await asyncio.sleep(window)
        busy1, total1 = _cpu_ticks()
        if total1 > total0 and (busy1 - busy0) / (total1 - total0) < busy_below:
            return True
        if time.monotonic() > deadline:
            return False


def read_rss_kb(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process in KiB; (0, 0) once it is gone."""
    values = {"VmRSS": 0, "VmHWM": 0}
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                key, _, rest = line.partition(":")
                if key in values:
                    values[key] = int(rest.split()[0])
    except (OSError, ValueError):
        pass
    return values["VmRSS"], values["VmHWM"]


def _group_cpu_seconds(pgid: int) -> float:
    """User + system CPU seconds of every live process in process group `pgid`."""
    ticks = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as stat:
                # The command name may hold spaces: the fields after ")" are fixed.
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # field 5 of stat: pgrp
            ticks += int(fields[11]) + int(fields[12])  # fields 14, 15: utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU seconds spent by the system's processes (and the whole machine) over a span."""

    def __init__(self, system: System) -> None:
        self.groups = {
            child.name: child.pid
            for child in system.supervisor.children
            if child.pid is not None and child.running()
        }
        self.groups["bench+agent"] = os.getpgrp()
        self._start: dict[str, float] = {}
        self._machine: tuple[int, int] = (0, 0)

    def start(self) -> CpuMeter:
        self._start = {name: _group_cpu_seconds(pid) for name, pid in self.groups.items()}
        self._machine = _cpu_ticks()
        return self

    def stop(self) -> str:
        """`CPU-s: prefect-server 12.3, worker 4.5, ...; machine 95% busy`."""
        spent, share = self.measure()
        parts = [
            f"{name} {seconds:.1f}"
            for name, seconds in sorted(spent.items(), key=lambda kv: -kv[1])
            if seconds >= 0.05
        ]
        return f"CPU-s: {', '.join(parts)}; machine {share:.0%} busy"

    def measure(self) -> tuple[dict[str, float], float]:
        """CPU seconds per process group since `start()`, and the machine's busy share."""
        spent = {
            name: _group_cpu_seconds(pid) - self._start[name] for name, pid in self.groups.items()
        }
        busy, total = _cpu_ticks()
        return spent, (busy - self._machine[0]) / max(total - self._machine[1], 1)


class RssSampler:
    """Samples a process's VmRSS every `period` seconds while running (an asyncio task)."""

    def __init__(self, pid: int, period: float = 0.05) -> None:
        self.pid = pid
        self.period = period
        self.peak_kb = 0
        self.samples = 0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            rss, _ = read_rss_kb(self.pid)
            self.peak_kb = max(self.peak_kb, rss)
            self.samples += 1
            await asyncio.sleep(self.period)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task
