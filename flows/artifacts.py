"""What a run shows in the Prefect UI besides its task runs: a progress artifact, and a table
of prompt / response excerpt / duration / tokens at the end.

Artifacts are a courtesy to Prefect UI users, never a reason to slow or fail a run: every
write happens in the background and errors are logged and dropped. Progress is for runs
long enough to watch: the progress artifact is first written once a run has lasted
`PROGRESS_INTERVAL_S` (a setting, 5 s by default: flows/settings.py), then at most that
often (the latest count wins), and brought to 100 % when the run ends. A run shorter than
that has only its results table: each progress write is an API call and a database row on
the Prefect server, and under a burst of short runs (which a loaded machine stretches, so
they would write more) those writes cost as much as the runs themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from typing import Any
from uuid import UUID

from prefect.artifacts import (
    acreate_progress_artifact,
    acreate_table_artifact,
    aupdate_progress_artifact,
)

logger = logging.getLogger("taskflows.artifacts")

EXCERPT_CHARS = 160


def artifact_key(call_name: str) -> str:
    """Prefect artifact keys allow lowercase letters, digits and dashes only."""
    slug = re.sub(r"[^a-z0-9]+", "-", call_name.lower()).strip("-") or "flow"
    return f"taskflow-{slug[:60]}-results"


def _excerpt(text: str | None) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= EXCERPT_CHARS else text[:EXCERPT_CHARS] + "…"


def results_table(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per prompt, as shown in the Prefect UI's table artifact."""
    return [
        {
            "prompt": f"{r['index'] + 1}. {_excerpt(r['prompt'])}",
            "response": _excerpt(r["response"]) if r.get("success") else f"ERROR: {r['error']}",
            "duration_ms": r.get("duration_ms"),
            "tokens": (r.get("usage") or {}).get("total_tokens"),
            "attempts": r.get("attempts"),
        }
        for r in results
    ]


class RunArtifacts:
    """The artifacts of one flow run."""

    def __init__(self, *, call_name: str, total: int, progress_every_s: float) -> None:
        self._call_name = call_name
        self._total = total
        self._every_s = progress_every_s
        self._artifact_id: UUID | None = None
        self._done = 0
        self._sent = -1
        self._writer: asyncio.Task[None] | None = None
        self._finishing = asyncio.Event()

    def progress(self, done: int) -> None:
        """Note that `done` prompts are finished; the update is sent in the background, at
        most once per `progress_every_s`."""
        self._done = done
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_progress())

    async def _write_progress(self) -> None:
        try:
            while self._sent != self._done:
                # Wait out the interval (cut short when the run ends), then send the latest.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._finishing.wait(), timeout=self._every_s)
                if self._artifact_id is None and self._finishing.is_set():
                    return  # ended before its first write: the results table says it all
                done = self._done
                percent = round(100.0 * done / self._total, 1)
                description = f"{self._call_name}: {done} of {self._total} prompts done"
                if self._artifact_id is None:
                    self._artifact_id = await acreate_progress_artifact(
                        progress=percent, description=description
                    )
                else:
                    await aupdate_progress_artifact(
                        self._artifact_id, progress=percent, description=description
                    )
                self._sent = done
        except Exception as exc:
            logger.warning("Could not update the progress artifact: %r", exc)

    async def finish(self, results: list[dict[str, Any]]) -> None:
        """Flush the last progress update and publish the results table."""
        self._finishing.set()
        if self._writer is not None:
            await self._writer
        if not results:
            return
        try:
            await acreate_table_artifact(
                table=results_table(results),
                key=artifact_key(self._call_name),
                description=f"Results of {self._call_name}",
            )
        except Exception as exc:
            logger.warning("Could not create the results table artifact: %r", exc)
