"""A setting taskflows cannot use stops each process at start-up with one sentence per bad
setting on stderr, naming the environment variable, and no traceback: the worker, the API
(the command `make up` runs), `make up` itself and the CLI. None of these needs a database:
they must fail before connecting to anything."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli import app as cli_app
from flows.settings import PROJECT_ROOT
from stack.commands import api_argv, worker_argv
from stack.ports import free_port

CONCURRENCY_SENTENCE = 'WORKER_CONCURRENCY must be a whole number between 1 and 1000, got "abc"'
EXPOSURE_SENTENCE = "API_HOST=0.0.0.0 makes the API reachable from other machines"
# Variables of the machine running the tests that would change what these processes do.
_CONFIGURATION = ("TASKFLOWS_API_TOKEN", "TASKFLOWS_ALLOW_NO_TOKEN", "API_HOST", "DATA_DIR")


def _run(argv: list[str], env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    base = {key: value for key, value in os.environ.items() if key not in _CONFIGURATION}
    return subprocess.run(
        argv,
        cwd=PROJECT_ROOT,
        env={**base, "PYTHONUNBUFFERED": "1", **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def _up_argv() -> list[str]:
    return [sys.executable, "-m", "stack.up"]


@pytest.mark.parametrize(
    ("program", "argv"),
    [
        ("taskflows worker", worker_argv()),
        ("taskflows api", api_argv(free_port())),
        ("up", _up_argv()),
    ],
    ids=["worker", "api", "up"],
)
def test_a_bad_setting_stops_the_process_with_a_sentence(
    program: str, argv: list[str], tmp_path: Path
) -> None:
    result = _run(argv, {"WORKER_CONCURRENCY": "abc", "DATA_DIR": str(tmp_path / "data")})

    assert result.returncode != 0
    assert f"{program}: {CONCURRENCY_SENTENCE}\n" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert "ValidationError" not in result.stderr + result.stdout
    assert not (tmp_path / "data").exists(), "it started something before refusing"


def test_each_bad_setting_gets_its_own_sentence_and_secrets_are_not_echoed() -> None:
    refused_token = "too-short-token"
    result = _run(
        worker_argv(),
        {
            "WORKER_CONCURRENCY": "0",
            "AGENT_STREAM": "maybe",
            "AGENT_TIMEOUT_S": "soon",
            "TASKFLOWS_API_TOKEN": refused_token,
        },
    )

    assert result.returncode != 0
    lines = result.stderr.splitlines()
    assert (
        'taskflows worker: WORKER_CONCURRENCY must be a whole number between 1 and 1000, got "0"'
        in lines
    )
    assert 'taskflows worker: AGENT_STREAM must be one of auto, on, off, got "maybe"' in lines
    assert 'taskflows worker: AGENT_TIMEOUT_S must be a number greater than 0, got "soon"' in lines
    # The token rule holds across fields, so pydantic reports it only once the fields pass.
    assert "Traceback" not in result.stderr
    assert refused_token not in result.stderr + result.stdout

    token_only = _run(worker_argv(), {"TASKFLOWS_API_TOKEN": refused_token})
    assert token_only.returncode != 0
    assert token_only.stderr.startswith("taskflows worker: TASKFLOWS_API_TOKEN is too short")
    assert refused_token not in token_only.stderr + token_only.stdout


def test_up_refuses_api_host_beyond_loopback_without_a_token_before_starting_anything(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    # No DATABASE_URL: `up` would start an embedded PostgreSQL in DATA_DIR/pg.
    env = {"API_HOST": "0.0.0.0", "DATA_DIR": str(data_dir), "DATABASE_URL": ""}

    result = _run(_up_argv(), env, timeout=60)

    assert result.returncode != 0
    assert result.stderr.startswith(f"up: {EXPOSURE_SENTENCE}")
    assert "TASKFLOWS_API_TOKEN" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert "starting" not in result.stderr
    assert not data_dir.exists(), "up started something before refusing"

    # The API itself says the same sentence (one rule, two places it is applied).
    api = _run(api_argv(free_port(), "0.0.0.0"), env)
    assert api.returncode != 0
    assert api.stderr.startswith(f"taskflows api: {EXPOSURE_SENTENCE}")
    assert "Traceback" not in api.stderr + api.stdout


def test_the_cli_names_the_bad_setting() -> None:
    result = CliRunner().invoke(
        cli_app, ["agents"], env={"WORKER_CONCURRENCY": "abc", "TASKFLOWS_API_TOKEN": ""}
    )

    assert result.exit_code == 1
    assert CONCURRENCY_SENTENCE in result.stderr
    assert "Traceback" not in result.output
