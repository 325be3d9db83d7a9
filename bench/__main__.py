"""`python -m bench`: start the system, measure every figure next to its baseline, print one
table (and write it to bench/results/latest.md).

Options: `--quick` (small counts, a smoke run), `--only launch,api` (some figure groups),
`--repeat N` (repeats of the noisy figures: launch, the 20-prompt overhead, progress).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import signal
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from types import FrameType

import psycopg

from bench import (
    burst,
    first_minute,
    launch,
    live_output,
    overhead,
    prefect_requests,
    progress,
    streams,
    throughput,
)
from bench.baseline_client import start_baseline
from bench.profiling import Profiler
from bench.stats import Row, render
from bench.system import System, bench_system, connect, settle
from bench.system import progress as say
from flows.errors import TaskflowsError

# The burst (and its RSS sample) runs before the 50 KB answers inflate the worker's heap.
# first_minute runs first: it measures the system as it comes up. requests runs last: its
# few hundred flow runs (deleted at its end) must not weigh on the other figures.
GROUPS = (
    "first_minute",
    "launch",
    "burst",
    "progress",
    "live",
    "overhead",
    "api",
    "streams",
    "requests",
)
RESULTS = Path(__file__).resolve().parent / "results"


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke run")
    parser.add_argument(
        "--only", default="", help=f"comma-separated figure groups out of {', '.join(GROUPS)}"
    )
    parser.add_argument(
        "--repeat", type=int, default=None, help="repeats of the noisy figures (default 3; quick 1)"
    )
    parser.add_argument("--output", type=Path, default=RESULTS / "latest.md")
    parser.add_argument(
        "--trace",
        action="store_true",
        help="log the API's and the worker's HTTP and SQL calls; write a launch trace "
        "(timings with tracing on are a little slower)",
    )
    parser.add_argument(
        "--sustained",
        type=int,
        default=None,
        help="runs in the sustained figure (default 500; quick 40): fewer for a quicker "
        "before/after comparison on a busy machine",
    )
    parser.add_argument(
        "--split",
        action="store_true",
        help="run the Prefect server split (API + services processes over Redis): REDIS_URL's "
        "server, else redis://127.0.0.1:6379; also the default when REDIS_URL is set",
    )
    parser.add_argument(
        "--one-process",
        action="store_true",
        help="run the Prefect server as one process even when REDIS_URL is set",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="sample the Prefect server and the worker with py-spy while the figures run; "
        "write top-N tables by Prefect service and API route (profile-*.md) to the log directory",
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="add to the worker's and the API's environment, e.g. to try a Prefect setting "
        "(repeatable; named in the table's header)",
    )
    args = parser.parse_args(argv)
    args.extra_env = {}
    for item in args.env:
        key, sep, value = item.partition("=")
        if not sep or not key:
            parser.error(f"--env wants KEY=VALUE, got {item!r}")
        args.extra_env[key] = value
    args.groups = [g.strip() for g in args.only.split(",") if g.strip()] or list(GROUPS)
    unknown = set(args.groups) - set(GROUPS)
    if unknown:
        parser.error(
            f"unknown figure group(s) {', '.join(sorted(unknown))}; pick from {', '.join(GROUPS)}"
        )
    if args.repeat is None:
        args.repeat = 1 if args.quick else 3
    if not 1 <= args.repeat <= 20:
        parser.error("--repeat must be between 1 and 20")
    return args


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def _machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        mem_kb = next(
            int(line.split()[1])
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal")
        )
        memory = f"{mem_kb / 1024 / 1024:.1f} GiB RAM"
    except (OSError, StopIteration, ValueError):
        memory = "unknown RAM"
    return f"{os.cpu_count()} cores ({model}), {memory}, {platform.system()} {platform.release()}"


async def _run(system: System, args: argparse.Namespace, busy: list[str]) -> list[Row]:
    quick, repeat = args.quick, args.repeat
    rows: list[Row] = []
    if "first_minute" in args.groups:
        say("measuring first_minute (the system just started)")
        try:
            rows.extend(
                await first_minute.measure(
                    system, started_at=args.started_at, warm_runs=3 if quick else 10
                )
            )
        except Exception as exc:
            traceback.print_exc()
            rows.append(
                Row("first_minute: could not measure", "-", "error", "-", False, f"{exc!r}"[:200])
            )
    conn = await connect(system)
    try:
        baseline = await start_baseline(system, conn)
    finally:
        await conn.close()
    plan: dict[str, Callable[[], Awaitable[list[Row]]]] = {
        "launch": lambda: launch.measure(
            system,
            baseline,
            runs=5 if quick else 30,
            repeat=repeat,
            warmup=1 if quick else 3,
            trace_dir=system.trace_dir,
        ),
        "overhead": lambda: overhead.measure(
            system, baseline, short=20, long=30 if quick else 200, repeat=repeat
        ),
        "progress": lambda: progress.measure(
            system, baseline, prompts=5 if quick else 20, repeat=repeat
        ),
        "live": lambda: live_output.measure(system, runs=2 if quick else 5, prompts=5),
        "burst": lambda: burst.measure(
            system,
            baseline,
            burst=20 if quick else 50,
            sustained=args.sustained or (40 if quick else 500),
            sustained_timeout=120 if quick else 900,
        ),
        "api": lambda: throughput.measure(
            system,
            history=1000 if quick else 10_000,
            seconds=3 if quick else 10,
            connections=20,
        ),
        "streams": lambda: streams.measure(system, streams=100 if quick else 1000),
        "requests": lambda: prefect_requests.measure(system, calls=20 if quick else 100),
    }
    for group in GROUPS:
        if group not in args.groups or group == "first_minute":
            continue
        if not await settle():
            busy.append(group)
            say(f"the machine is busy with other work; measuring {group} anyway")
        say(f"measuring {group}")
        started = time.monotonic()
        try:
            rows.extend(await plan[group]())
        except Exception as exc:  # one broken figure must not hide the others
            traceback.print_exc()
            rows.append(
                Row(f"{group}: could not measure", "-", "error", "-", False, f"{exc!r}"[:200])
            )
        say(f"{group} took {time.monotonic() - started:.0f} s")
        system.agent.log.clear()
        system.agent.demo.requests.clear()
        if not system.worker.running():
            rows.append(
                Row("worker process", "alive", "DIED", "-", False, system.worker.log_tail(5))
            )
            break
    return rows


def _profiler(system: System) -> Profiler:
    """py-spy on every Prefect server process and the worker, started now."""
    targets = {
        child.name: child.pid
        for child in system.supervisor.children
        if child.pid is not None and (child.name.startswith("prefect") or child.name == "worker")
    }
    profiler = Profiler(system.supervisor.log_dir, targets)
    profiler.start()
    return profiler


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _still_stopping(signum: int, frame: FrameType | None) -> None:
    print("bench: still stopping, please wait", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    stamp = datetime.now(UTC)
    log_dir = RESULTS / "logs" / stamp.strftime("%Y%m%d-%H%M%S")
    load_start = _load()
    say(f"{os.cpu_count()} cores, load average {load_start}; logs in {log_dir}")
    rows: list[Row] = []
    busy: list[str] = []
    database = "DATABASE_URL's server" if os.environ.get("DATABASE_URL") else "embedded"
    try:
        trace_dir = log_dir / "trace" if args.trace else None
        redis_url = None
        if (args.split or os.environ.get("REDIS_URL")) and not args.one_process:
            redis_url = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
        with bench_system(log_dir, trace_dir, args.extra_env, redis_url) as system:
            args.started_at = time.monotonic()
            profiler = _profiler(system) if args.profile else None
            try:
                rows = asyncio.run(_run(system, args, busy))
            finally:
                if profiler is not None:
                    for summary in profiler.stop():
                        say(f"profile summary: {summary}")
                # A second Ctrl-C must not cut the shutdown short and leave processes behind.
                signal.signal(signal.SIGINT, _still_stopping)
                signal.signal(signal.SIGTERM, _still_stopping)
    except KeyboardInterrupt:
        say("interrupted; everything it started is stopped")
        return 130
    except (TaskflowsError, psycopg.Error) as exc:
        say(f"could not start the system: {exc}")
        return 1
    load_end = _load()
    header = [
        f"taskflows bench, {stamp.strftime('%Y-%m-%d %H:%M UTC')}"
        + (" (--quick: small counts, not comparable)" if args.quick else ""),
        f"machine: {_machine()}",
        f"cores: {os.cpu_count()}; load average (1/5/15 min) at start {load_start}, "
        f"at end {load_end}",
        f"PostgreSQL: {database}; Prefect {version('prefect')}; "
        f"Python {platform.python_version()}; repeats of noisy figures: {args.repeat}",
        "Prefect server: "
        + (
            f"split over Redis (API processes: {os.environ.get('PREFECT_API_PROCESSES', '1')}, "
            "services: 1)"
            if redis_url
            else "one process (API and services)"
        ),
    ]
    if args.profile:
        header.append(
            "--profile: py-spy sampled the Prefect server and the worker (figures a little "
            f"slower); summaries in {log_dir}/profile-*.md"
        )
    if args.extra_env:
        header.append("worker and API environment: " + " ".join(args.env))
    if busy:
        header.append(
            "WARNING: other work kept the machine busy before: "
            + ", ".join(busy)
            + " (figures noisier than they should be)"
        )
    table = render(rows)
    text = "\n".join(header) + "\n\n" + table + "\n"
    print(text, flush=True)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    say(f"table written to {args.output}")
    return 0 if rows else 1


if __name__ == "__main__":
    sys.exit(main())
