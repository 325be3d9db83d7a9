"""`make up` itself, as a user runs it: `python -m stack.up` in its own process, on free
ports, against the test system's PostgreSQL server (a fresh database), Prefect server and
fake agent. It prints its banner, restarts a worker that dies, and Ctrl-C stops everything
it started."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import httpx
import psycopg
import pytest

from flows.settings import PROJECT_ROOT
from stack.embedded_postgres import ensure_databases
from stack.ports import free_port
from tests.conftest import System

pytestmark = pytest.mark.slow
T = TypeVar("T")


def _children(pid: int) -> dict[int, str]:
    """The live processes whose parent is `pid`: {pid: command line}."""
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            state = stat.rsplit(")", 1)[1].split()[0]
            if parent == pid and state != "Z":
                found[int(entry.name)] = (
                    (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                )
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile
    return found


def _wait_for(what: str, condition: Callable[[], T], timeout: float = 90.0) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def up_database(system: System) -> Iterator[str]:
    name = f"taskflows_up_{uuid.uuid4().hex[:8]}"
    admin = system.database_url.rsplit("/", 1)[0] + "/postgres"
    ensure_databases(admin, [name])
    yield system.database_url.rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_up_prints_its_banner_restarts_a_dead_worker_and_stops_everything_on_ctrl_c(
    system: System, up_database: str, tmp_path: Path
) -> None:
    api_port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": up_database,
        "PREFECT_API_URL": system.prefect_api_url,
        "AGENT_API_URL": system.agent_url,
        "API_PORT": str(api_port),
        "DATA_DIR": str(tmp_path / "data"),
        "PYTHONUNBUFFERED": "1",
        # Its own work pool: its worker must not claim the test system's runs.
        "WORK_POOL": f"up-test-{uuid.uuid4().hex[:8]}",
        "PREFECT_HOME": system.env.get("PREFECT_HOME", str(tmp_path / "prefect-home")),
    }
    output = tmp_path / "up.out"
    with open(output, "wb") as out:
        up = subprocess.Popen(
            [sys.executable, "-m", "stack.up"],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        banner = _wait_for(
            "the banner",
            lambda: output.read_text() if "Press Ctrl-C to stop." in output.read_text() else "",
            timeout=180,
        )
        api_url = f"http://127.0.0.1:{api_port}"
        assert "taskflows is up" in banner
        assert f"API         {api_url}\n" in banner
        assert f"{api_url}/docs" in banner
        assert system.agent_url in banner
        assert "Database" in banner and up_database.rsplit("/", 1)[1] in banner
        assert httpx.get(f"{api_url}/healthz", timeout=10).status_code in (200, 503)

        # kill -9 of the worker: up starts another one.
        workers = _wait_for(
            "the worker",
            lambda: [p for p, cmd in _children(up.pid).items() if "-m worker" in cmd],
        )
        os.kill(workers[0], signal.SIGKILL)
        replacement = _wait_for(
            "a new worker",
            lambda: [
                p for p, cmd in _children(up.pid).items() if "-m worker" in cmd and p != workers[0]
            ],
            timeout=60,
        )
        started = list(_children(up.pid))
        assert replacement[0] in started

        # Ctrl-C: everything it started stops, and it exits 0.
        up.send_signal(signal.SIGINT)
        assert up.wait(timeout=90) == 0, output.read_text()[-3000:]
        for pid in started:
            assert not Path(f"/proc/{pid}").exists() or _is_zombie(pid), f"{pid} outlived up"
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{api_url}/healthz", timeout=5)
        assert "up: stopped" in output.read_text()
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True
