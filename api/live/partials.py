"""The agent's text while it is written, as the live feed relays it.

The flow publishes each piece on `channels.PARTIAL_OUTPUT` (see `flows.partials`) as
`{"id", "index", "attempt", "offset", "delta"}`. The feed forwards every piece as it is, and
keeps the text so far of each prompt in flight (`PartialTexts`) so that a client that
connects mid-answer, or reads `GET /api/executions/{id}`, starts from it. It is a relay
buffer, not a cache of the table: an entry is dropped as soon as the prompt's result
reaches the row.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

from flows.execution_store import ACTIVE_STATUSES, SummaryRow


@dataclass(frozen=True, slots=True)
class Piece:
    """One published piece: `delta` goes at character `offset` of the answer to prompt
    `index` (attempt `attempt`) of execution `id`."""

    id: int
    index: int
    attempt: int
    offset: int
    delta: str

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)


def parse_piece(payload: str) -> Piece | None:
    """The piece in a notification's payload, or None when it is not one."""
    try:
        data = json.loads(payload)
        numbers = {key: data[key] for key in ("id", "index", "attempt", "offset")}
        delta = data["delta"]
    except (ValueError, KeyError, TypeError):
        return None
    if not all(type(value) is int for value in numbers.values()) or not isinstance(delta, str):
        return None
    return Piece(**numbers, delta=delta)


@dataclass(slots=True)
class _Text:
    index: int
    attempt: int
    offset: int
    text: str


class PartialTexts:
    """The text so far of each prompt in flight, by execution id."""

    def __init__(self) -> None:
        self._texts: dict[int, _Text] = {}

    def add(self, piece: Piece) -> None:
        entry = self._texts.get(piece.id)
        if entry is not None and (entry.index, entry.attempt) == (piece.index, piece.attempt):
            if piece.offset == entry.offset + len(entry.text):
                entry.text += piece.delta
            return  # a repeat or a gap: keep what is consistent
        self._texts[piece.id] = _Text(piece.index, piece.attempt, piece.offset, piece.delta)

    def text_of(self, execution_id: int) -> dict[str, Any] | None:
        """`{index, attempt, offset, text}` of the prompt in flight, as far as it is written."""
        entry = self._texts.get(execution_id)
        return asdict(entry) if entry is not None else None

    def forget_finished(self, rows: Iterable[SummaryRow]) -> None:
        """Drop the text of prompts whose result reached the row (or whose run ended)."""
        for row in rows:
            entry = self._texts.get(row.id)
            if entry is not None and (
                row.status not in ACTIVE_STATUSES or row.results_count > entry.index
            ):
                del self._texts[row.id]

    def replay(self, execution_ids: Iterable[int]) -> Iterator[Piece]:
        """One piece per prompt in flight with all its text so far, for a new client."""
        for execution_id in execution_ids:
            entry = self._texts.get(execution_id)
            if entry is not None:
                yield Piece(execution_id, entry.index, entry.attempt, entry.offset, entry.text)
