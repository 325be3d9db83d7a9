"""A small process supervisor for `up` and the test suite.

Each child runs in its own process group (so stopping it also stops whatever it spawned),
writes stdout and stderr to `LOG_DIR/NAME.log`, and can be waited on until an HTTP URL
answers 200. Children marked `restart=True` (the worker) are started again when they die,
with a growing back-off. Example::

    supervisor = Supervisor(log_dir=Path(".data/logs"))
    api = supervisor.start("api", [sys.executable, "-m", "uvicorn", "api.app:app"],
                           ready_url="http://127.0.0.1:8000/healthz")
    ...
    supervisor.stop_all()
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import httpx

from flows.errors import ChildFailed

# A child that stayed up this long is considered healthy again: its back-off starts over.
_HEALTHY_AFTER_S = 60.0
_MAX_BACKOFF_S = 30.0


@dataclass
class Child:
    """One supervised process and how to start it again."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    restart: bool = False
    cwd: Path | None = None
    popen: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    log_offset: int = 0  # where the current run's output starts in the log
    restarts: int = 0
    restart_at: float | None = None
    stopping: bool = field(default=False, repr=False)
    # Guards exit checks, restarts and stops, so the process is reaped exactly once.
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    def running(self) -> bool:
        """True while the process has not exited (it is never reaped behind our back)."""
        return self.popen is not None and _exit_code(self.popen) is None

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the child's process group, SIGKILL it after `timeout`, reap it."""
        with self.lock:
            self.stopping = True
            if self.popen is not None:
                _stop_group(self.popen, timeout)

    def log_tail(self, lines: int = 30) -> str:
        try:
            with open(self.log_path, "rb") as log:
                log.seek(max(self.log_offset, log.seek(0, os.SEEK_END) - 16_384))
                tail = log.read().decode(errors="replace").splitlines()[-lines:]
        except OSError:
            return f"(no log at {self.log_path})"
        return f"last lines of {self.log_path}:\n" + "\n".join(tail)


class Supervisor:
    """Starts children, waits for them, restarts the ones that should, stops them all."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.children: list[Child] = []
        self._closing = threading.Event()
        self._watcher: threading.Thread | None = None

    def start(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        ready_url: str | None = None,
        ready_timeout: float = 60.0,
        restart: bool = False,
        cwd: Path | None = None,
    ) -> Child:
        """Start `argv` as child `name`; with `ready_url`, return only once it answers 200.

        `env` is added to this process's environment. If the child exits or the deadline
        passes first, the child is stopped and `ChildFailed` is raised.
        """
        self.log_dir.mkdir(parents=True, exist_ok=True)
        child = Child(
            name=name,
            argv=list(argv),
            # Unbuffered, so a child's last words reach its log before a crash.
            env={"PYTHONUNBUFFERED": "1", **os.environ, **(env or {})},
            log_path=self.log_dir / f"{name}.log",
            restart=restart,
            cwd=cwd,
        )
        # Listed before it exists, so an interrupt right after the spawn still stops it.
        self.children.append(child)
        _spawn(child)
        if ready_url is not None:
            try:
                wait_ready(child, ready_url, timeout=ready_timeout)
            except BaseException:
                child.stop()
                raise
        if restart:
            self._ensure_watcher()
        return child

    def stop_all(self, timeout: float = 10.0) -> None:
        """Stop every child, the last started first (the API before the server it uses)."""
        self._closing.set()
        if self._watcher is not None:
            self._watcher.join()
        for child in reversed(self.children):
            child.stop(timeout)

    def failed(self) -> list[Child]:
        """Children that exited on their own and will not be restarted."""
        return [c for c in self.children if not (c.stopping or c.restart or c.running())]

    def _ensure_watcher(self) -> None:
        if self._watcher is None:
            self._watcher = threading.Thread(target=self._watch, name="supervisor", daemon=True)
            self._watcher.start()

    def _watch(self) -> None:
        while not self._closing.wait(0.5):
            for child in self.children:
                with child.lock:
                    if child.restart and not child.stopping:
                        _restart_if_dead(child)


def wait_ready(child: Child, url: str, *, timeout: float = 60.0) -> None:
    """Poll `url` until it answers 200; raise `ChildFailed` if the child exits or time runs out."""
    deadline = time.monotonic() + timeout
    # trust_env=False: a proxy from the environment must not intercept loopback checks.
    with httpx.Client(timeout=2.0, trust_env=False) as client:
        while True:
            try:
                if client.get(url).status_code == 200:
                    return
            except httpx.TransportError:
                pass  # not listening yet
            if child.popen is not None and (code := _exit_code(child.popen)) is not None:
                raise ChildFailed(
                    f"{child.name} exited with code {code} before {url} answered; "
                    + child.log_tail()
                )
            if time.monotonic() > deadline:
                raise ChildFailed(
                    f"{child.name} did not answer {url} within {timeout:.0f} s; " + child.log_tail()
                )
            time.sleep(0.2)


def _spawn(child: Child) -> None:
    with open(child.log_path, "ab") as log:
        child.log_offset = log.tell()
        stamp = datetime.now().isoformat(timespec="seconds")
        log.write(f"\n--- {stamp} starting: {' '.join(child.argv)}\n".encode())
        log.flush()
        child.popen = subprocess.Popen(
            child.argv,
            env=child.env,
            cwd=child.cwd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            # Its own group: a terminal Ctrl-C reaches only the supervisor, which stops the
            # children in order, and a stop reaches everything the child spawned.
            start_new_session=True,
        )
    child.started_at = time.monotonic()


def _restart_if_dead(child: Child) -> None:
    assert child.popen is not None
    if child.restart_at is None:
        code = _exit_code(child.popen)
        if code is None:
            return
        _stop_group(child.popen, 0)  # the exit is seen: sweep its group and reap it
        if time.monotonic() - child.started_at > _HEALTHY_AFTER_S:
            child.restarts = 0
        backoff = min(2.0**child.restarts, _MAX_BACKOFF_S)
        child.restart_at = time.monotonic() + backoff
        _note(child, f"exited with code {code}; restarting in {backoff:.0f} s")
    elif time.monotonic() >= child.restart_at:
        child.restart_at = None
        child.restarts += 1
        _spawn(child)


def _note(child: Child, message: str) -> None:
    with open(child.log_path, "a") as log:
        log.write(f"--- supervisor: {child.name} {message}\n")


def _exit_code(popen: subprocess.Popen[bytes]) -> int | None:
    """The exit code if the process has exited, WITHOUT reaping it.

    A reaped leader's process-group id could be reused; leaving the zombie in place until
    the group has been swept keeps `killpg` aimed at the right processes.
    """
    if popen.returncode is not None:
        return popen.returncode
    try:
        info = os.waitid(os.P_PID, popen.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return popen.wait()
    if info is None:
        return None
    # Popen's convention: a negative code is the signal that killed it.
    return info.si_status if info.si_code == os.CLD_EXITED else -info.si_status


def _stop_group(popen: subprocess.Popen[bytes], timeout: float) -> None:
    if popen.returncode is not None:
        return
    _signal_group(popen.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _exit_code(popen) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    # Whether or not the leader obeyed: nothing of its group may outlive it.
    _signal_group(popen.pid, signal.SIGKILL)
    popen.wait()


def _signal_group(pgid: int, signum: signal.Signals) -> None:
    # ProcessLookupError: the whole group is gone already.
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)
