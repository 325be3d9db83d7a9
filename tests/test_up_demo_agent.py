"""`make up` with port 8080 taken and no agent configured: the demo agent starts on a free
port, and the banner says where."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from contextlib import suppress
from pathlib import Path

import httpx
import pytest

from flows.settings import PROJECT_ROOT
from stack.ports import free_port
from tests.conftest import System

# A worker stand-in: a real one would claim the other tests' runs for the demo agent.
IDLE = f"{sys.executable} -c 'import time; time.sleep(3600)'"


@pytest.mark.slow
def test_a_taken_agent_port_moves_the_demo_agent_and_the_banner_says_so(
    system: System, tmp_path: Path
):
    blocker = socket.socket()
    with suppress(OSError):  # already taken by someone else: just as good
        blocker.bind(("127.0.0.1", 8080))
        blocker.listen()
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AGENT_API_", "PREFECT_", "DB_"))
    }
    env.update(
        DATABASE_URL=system.database_url,
        PREFECT_API_URL=system.prefect_api_url,
        DATA_DIR=str(tmp_path),
        PYTHONUNBUFFERED="1",
    )
    up = subprocess.Popen(
        [sys.executable, "-m", "stack.up", "--port", str(free_port()), "--worker-command", IDLE],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        output = ""
        deadline = time.monotonic() + 120
        assert up.stdout is not None
        while "Press Ctrl-C to stop." not in output and time.monotonic() < deadline:
            line = up.stdout.readline()
            if not line:
                break
            output += line
        found = re.search(r"Agent\s+(http://127\.0\.0\.1:(\d+)) \((.*)\)", output)
        assert found, output
        url, port, note = found.group(1), int(found.group(2)), found.group(3)
        assert port != 8080
        assert note == "bundled demo agent; port 8080 was taken"
        assert "the demo agent starts on port" in output
        models = httpx.get(f"{url}/v1/models", timeout=10).json()
        assert models["data"], models
    finally:
        up.send_signal(signal.SIGINT)
        try:
            code = up.wait(timeout=60)
        finally:
            blocker.close()
            if up.poll() is None:
                up.kill()
    assert code == 0
