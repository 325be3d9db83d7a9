"""`--profile`: where the Prefect server's and the worker's CPU goes, by Prefect service and
API route.

py-spy samples each process (`py-spy record --format raw --gil`, 50 Hz: only the thread
holding the GIL, i.e. Python doing work, not threads waiting in a selector) while the
figures are measured, and writes the collapsed stacks to the log directory. Each sample is
then attributed three ways:

- to its *owner*: the outermost recognisable frame from the root, i.e. the API route module
  (`prefect/server/api/flow_runs.py` -> `route flow_runs`), the server service
  (`task_run_recorder`, `event_persister`, ...), or in the worker the engine part
  (`task_engine`, `flow_engine`, `events`, `logging`, `artifacts`, taskflows' own code);
- to its *leaf library*: the innermost frame's package (`sqlalchemy`, `asyncpg`, `pydantic`,
  `json`, ...), which says what kind of work it was;
- to its *innermost Prefect function*: SQLAlchemy's async sessions run their work in
  greenlets whose stacks do not reach back to the route or service that asked for it, so
  the owner table has a large "other" share; the innermost `prefect.*` frame still says
  which Prefect code it was (`models.task_runs`, `events.storage.database`, ...).

`profile-<process>.md` in the log directory holds the three top-N tables.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

RATE_HZ = 50
TOP_N = 25

# "function (path/to/file.py:123)" as py-spy writes each frame of a raw (collapsed) stack.
_ROOT = str(Path(__file__).resolve().parent.parent) + "/"
_FRAME = re.compile(r"^(?P<function>.*?) \((?P<file>[^():]+)(?::\d+)?\)$")


def _module_path(file: str) -> str:
    """`prefect/server/api/flow_runs.py` (py-spy shortens paths to the part after the
    sys.path entry) -> `prefect/server/api/flow_runs`; full paths are cut the same way."""
    if "site-packages/" in file:
        file = file.split("site-packages/", 1)[1]
    elif "/python3." in file:  # the standard library: .../lib/python3.11/json/decoder.py
        file = file.split("/python3.", 1)[1].partition("/")[2]
    elif file.startswith(_ROOT):
        file = file[len(_ROOT) :]
    return file.removesuffix(".py")


def owner_of(module: str, function: str) -> str | None:
    """Which Prefect service, API route or engine part a frame belongs to (None: no idea)."""
    parts = module.split("/")
    if module.startswith("prefect/server/api/") and len(parts) >= 4:
        name = parts[3]
        if name not in ("server", "dependencies", "validation", "middleware", "__init__"):
            return f"route {name}"
    if module.startswith("prefect/server/events/services/"):
        return f"service {parts[-1]}"
    if module.startswith("prefect/server/services/") and parts[-1] not in ("base", "__init__"):
        return f"service {parts[-1]}"
    if module.startswith("prefect/server/events/"):
        return f"events {parts[-1]}"
    if module.startswith("prefect/server/orchestration/"):
        return "orchestration"
    for part in ("task_engine", "flow_engine", "events", "logging", "artifacts", "results"):
        if module.startswith(f"prefect/{part}") or module.startswith(f"prefect/client/{part}"):
            return f"prefect {part}"
    if module.startswith("prefect/client/"):
        return "prefect client"
    if module.split("/", 1)[0] in ("flows", "worker", "deployments") and not module.endswith(
        "__main__"
    ):  # the worker's entry point is the root of every stack: it owns nothing
        return f"taskflows {module}"
    return None


def library_of(module: str) -> str:
    """The top-level package of a frame, or the stdlib module ("asyncio", "json")."""
    return module.split("/", 1)[0]


@dataclass
class Profile:
    samples: int = 0
    by_owner: Counter[str] = field(default_factory=Counter)
    by_library: Counter[str] = field(default_factory=Counter)
    by_owner_library: Counter[tuple[str, str]] = field(default_factory=Counter)
    by_prefect_function: Counter[str] = field(default_factory=Counter)


def summarise(raw: str) -> Profile:
    """Attribute each collapsed stack (`frame;frame;... count`) to an owner and a library."""
    profile = Profile()
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [m for m in (_FRAME.match(f) for f in stack.split(";")) if m]
        owner = "other (event loop, idle housekeeping)"
        for frame in frames:  # from the root: the outermost recognisable frame owns it
            found = owner_of(_module_path(frame["file"]), frame["function"])
            if found is not None:
                owner = found
                break
        library = library_of(_module_path(frames[-1]["file"])) if frames else "unknown"
        innermost = "(no Prefect frame)"
        for frame in reversed(frames):
            module = _module_path(frame["file"])
            if module.startswith("prefect/"):
                innermost = (
                    f"{module.removeprefix('prefect/').replace('/', '.')}:{frame['function']}"
                )
                break
        profile.by_prefect_function[innermost] += count
        profile.samples += count
        profile.by_owner[owner] += count
        profile.by_library[library] += count
        profile.by_owner_library[(owner, library)] += count
    return profile


def render(name: str, profile: Profile, top: int = TOP_N) -> str:
    total = max(profile.samples, 1)
    seconds = profile.samples / RATE_HZ
    lines = [
        f"# Profile of {name}",
        "",
        f"{profile.samples} samples at {RATE_HZ} Hz (~{seconds:.1f} s holding the GIL).",
        "Owner: the outermost Prefect service, API route or engine part on the stack.",
        "",
        "| owner | share | samples | top leaf libraries |",
        "|---|---|---|---|",
    ]
    for owner, count in profile.by_owner.most_common(top):
        leaves = Counter(
            {lib: n for (own, lib), n in profile.by_owner_library.items() if own == owner}
        )
        detail = ", ".join(f"{lib} {n / count:.0%}" for lib, n in leaves.most_common(3))
        lines.append(f"| {owner} | {count / total:.1%} | {count} | {detail} |")
    lines += ["", "| leaf library | share | samples |", "|---|---|---|"]
    for library, count in profile.by_library.most_common(top):
        lines.append(f"| {library} | {count / total:.1%} | {count} |")
    lines += ["", "| innermost Prefect function | share | samples |", "|---|---|---|"]
    for function, count in profile.by_prefect_function.most_common(top):
        lines.append(f"| {function} | {count / total:.1%} | {count} |")
    return "\n".join(lines) + "\n"


class Profiler:
    """py-spy recorders on some processes, from `start()` until `stop()`."""

    def __init__(self, log_dir: Path, targets: dict[str, int]) -> None:
        self.log_dir = log_dir
        self.targets = targets
        self._recorders: dict[str, subprocess.Popen[bytes]] = {}

    @staticmethod
    def available() -> str | None:
        """The py-spy executable, or None."""
        beside = Path(sys.executable).with_name("py-spy")
        return str(beside) if beside.exists() else shutil.which("py-spy")

    def start(self) -> None:
        py_spy = self.available()
        if py_spy is None:
            raise RuntimeError("--profile needs py-spy (`make bootstrap` installs it)")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for name, pid in self.targets.items():
            self._recorders[name] = subprocess.Popen(
                [
                    py_spy,
                    "record",
                    "--pid",
                    str(pid),
                    "--rate",
                    str(RATE_HZ),
                    "--format",
                    "raw",
                    "--subprocesses",
                    "--nonblocking",
                    "--gil",
                    "--output",
                    str(self.log_dir / f"profile-{name}.txt"),
                ],
                stdout=subprocess.DEVNULL,
                stderr=open(self.log_dir / f"profile-{name}.log", "wb"),  # noqa: SIM115
            )

    def stop(self) -> list[Path]:
        """Stop the recorders (py-spy writes its file on SIGINT); summarise each profile."""
        written: list[Path] = []
        for name, recorder in self._recorders.items():
            if recorder.poll() is None:
                recorder.send_signal(signal.SIGINT)
            try:
                recorder.wait(timeout=60)
            except subprocess.TimeoutExpired:
                recorder.kill()
                recorder.wait()
            raw = self.log_dir / f"profile-{name}.txt"
            if not raw.exists():
                continue
            summary = self.log_dir / f"profile-{name}.md"
            summary.write_text(render(name, summarise(raw.read_text())))
            written.append(summary)
        self._recorders.clear()
        return written
