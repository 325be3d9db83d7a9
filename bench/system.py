"""Start the whole system for a benchmark, the way the test suite does, and stop it again.

PostgreSQL is `DATABASE_URL`'s server when it is set (fresh databases are created on it and
dropped afterwards), otherwise an embedded one in a temporary directory. Then a Prefect
server on that PostgreSQL, the real worker (`python -m worker`) and the real API
(uvicorn) as subprocesses, and the fake agent in this process, all on loopback.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg
from psycopg.rows import dict_row

from bench.agent import FakeAgent, serve_agent
from flows.settings import PROJECT_ROOT
from stack.commands import api_argv, worker_argv
from stack.embedded_postgres import EmbeddedPostgres, ensure_databases, prefect_database_url
from stack.prefect_server import prefect_env, start_prefect_server
from stack.supervisor import Child, Supervisor
from tests.fake_agent import free_port

FINAL = ("completed", "failed", "cancelled")
Row = dict[str, Any]


@dataclass
class System:
    """Where each part of the running system is."""

    admin_url: str
    database_url: str
    prefect_api_url: str
    api_url: str
    agent: FakeAgent
    supervisor: Supervisor
    worker: Child
    env: dict[str, str]
    log_dir: Path
    embedded: bool
    trace_dir: Path | None = None


def with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + database))


def progress(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


@contextmanager
def start_system(
    log_dir: Path, trace_dir: Path | None = None, extra_env: dict[str, str] | None = None
) -> Iterator[System]:
    """Start everything; on leaving the block (or an error, or Ctrl-C) stop all of it.

    With `trace_dir`, the worker and the API log each HTTP request and SQL statement they
    make there (bench/trace_hook/sitecustomize.py). `extra_env` is added to the worker's and
    the API's environment (to try a setting without changing code).
    """
    work = Path(tempfile.mkdtemp(prefix="taskflows-bench-"))
    supervisor = Supervisor(log_dir)
    embedded: EmbeddedPostgres | None = None
    admin_url = ""
    suffix = uuid.uuid4().hex[:8]
    app_db, prefect_db = f"taskflows_bench_{suffix}", f"prefect_bench_{suffix}"
    created_databases = False
    try:
        configured = os.environ.get("DATABASE_URL")
        if configured:
            admin_url = with_database(configured, "postgres")
            progress(f"PostgreSQL: DATABASE_URL's server, fresh databases *_bench_{suffix}")
        else:
            progress(f"PostgreSQL: embedded, in {work / 'pg'}")
            embedded = EmbeddedPostgres(work / "pg")
            admin_url = embedded.start()
        ensure_databases(admin_url, [app_db, prefect_db], {prefect_db: ["pg_trgm"]})
        created_databases = True
        database_url = with_database(admin_url, app_db)
        _apply_migrations(database_url)

        progress("starting the Prefect server (a fresh database is migrated first)")
        prefect_port = free_port()
        start_prefect_server(
            prefect_port,
            prefect_database_url(admin_url, prefect_db),
            home=work / "prefect-home",
            log_dir=log_dir,
            supervisor=supervisor,
            timeout=180,
        )
        prefect_api_url = f"http://127.0.0.1:{prefect_port}/api"
        with serve_agent() as agent:
            api_port = free_port()
            env = {
                **prefect_env(prefect_api_url, home=work / "prefect-home"),
                "DATABASE_URL": database_url,
                "AGENT_API_URL": agent.url,
                # `[delay=60]` prompts keep runs going during the API figures.
                "AGENT_TIMEOUT_S": "180",
                "API_PORT": str(api_port),
                "PYTHONUNBUFFERED": "1",
                **(extra_env or {}),
            }
            progress("starting the worker and the API")
            worker = supervisor.start(
                "worker",
                worker_argv(),
                env={**env, **_trace_env(trace_dir, "worker", env)},
                cwd=PROJECT_ROOT,
            )
            api_url = f"http://127.0.0.1:{api_port}"
            supervisor.start(
                "api",
                api_argv(api_port),
                env={**env, **_trace_env(trace_dir, "api", env)},
                cwd=PROJECT_ROOT,
                ready_url=f"{api_url}/healthz",  # 200 once the worker is online too
                ready_timeout=120,
            )
            yield System(
                admin_url=admin_url,
                database_url=database_url,
                prefect_api_url=prefect_api_url,
                api_url=api_url,
                agent=agent,
                supervisor=supervisor,
                worker=worker,
                env=env,
                log_dir=log_dir,
                embedded=embedded is not None,
                trace_dir=trace_dir,
            )
            progress("stopping the API, the worker and the Prefect server")
    finally:
        supervisor.stop_all()
        if created_databases:
            _drop_databases(admin_url, [app_db, prefect_db])
        if embedded is not None:
            with suppress(Exception):
                embedded.stop()
        shutil.rmtree(work, ignore_errors=True)


def _trace_env(trace_dir: Path | None, name: str, env: dict[str, str]) -> dict[str, str]:
    if trace_dir is None:
        return {}
    trace_dir.mkdir(parents=True, exist_ok=True)
    hook = str(Path(__file__).resolve().parent / "trace_hook")
    inherited = env.get("PYTHONPATH", os.environ.get("PYTHONPATH", ""))
    path = os.pathsep.join(p for p in (hook, inherited) if p)
    return {"PYTHONPATH": path, "BENCH_TRACE_DIR": str(trace_dir), "BENCH_TRACE_NAME": name}


def _apply_migrations(database_url: str) -> None:
    from flows.database import apply_migrations

    asyncio.run(apply_migrations(database_url))


def _drop_databases(admin_url: str, names: Sequence[str]) -> None:
    try:
        with psycopg.connect(admin_url, autocommit=True, connect_timeout=10) as conn:
            for name in names:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    except psycopg.Error as exc:
        progress(f"could not drop the bench databases: {exc}")


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
