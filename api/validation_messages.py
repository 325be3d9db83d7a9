"""Turn pydantic's validation errors into sentences a person understands.

`limit=501` becomes "limit must be at most 500 (got 501)", a number in a list of prompts
becomes "prompts[2] must be a string". Body inputs are never echoed (they may be huge);
short query, path and header values are, to show what was received.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

_ECHO_LIMIT = 40
_NUMBER = re.compile(r"-?\d+(\.\d+)?")
_PLURAL_ITEMS = {"too_short", "too_long"}


def field_name(loc: Sequence[int | str]) -> str:
    """`("body", "prompts", 2)` -> `prompts[2]`; `("header", "If-Match")` -> the header."""
    source, *path = loc or ("body",)
    if source == "header" and path:
        return f"the {path[0]} header"
    if not path:
        return "the request body" if source == "body" else str(source)
    name = ""
    for part in path:
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else str(part))
    return name


def _items(count: Any) -> str:
    return f"{count} item" if count == 1 else f"{count} items"


def _shown(value: Any) -> str:
    """How a received query, path or header value is quoted back: numbers bare."""
    if isinstance(value, str) and _NUMBER.fullmatch(value):
        return value
    return repr(value)


def _limit(ctx: Mapping[str, Any], key: str) -> Any:
    return ctx.get(key, "?")


_PHRASES: dict[str, Callable[[Mapping[str, Any]], str]] = {
    "missing": lambda ctx: "is required",
    "int_parsing": lambda ctx: "must be an integer",
    "int_type": lambda ctx: "must be an integer",
    "int_from_float": lambda ctx: "must be a whole number",
    "float_parsing": lambda ctx: "must be a number",
    "bool_parsing": lambda ctx: "must be true or false",
    "string_type": lambda ctx: "must be a string",
    "list_type": lambda ctx: "must be a list",
    "dict_type": lambda ctx: "must be a JSON object",
    "model_type": lambda ctx: "must be a JSON object",
    "model_attributes_type": lambda ctx: "must be a JSON object",
    "extra_forbidden": lambda ctx: "is not a field this endpoint accepts",
    "greater_than_equal": lambda ctx: f"must be at least {_limit(ctx, 'ge')}",
    "greater_than": lambda ctx: f"must be greater than {_limit(ctx, 'gt')}",
    "less_than_equal": lambda ctx: f"must be at most {_limit(ctx, 'le')}",
    "less_than": lambda ctx: f"must be less than {_limit(ctx, 'lt')}",
    "string_too_short": lambda ctx: (
        "must not be empty"
        if ctx.get("min_length") == 1
        else f"must be at least {_limit(ctx, 'min_length')} characters long"
    ),
    "string_too_long": lambda ctx: f"must be at most {_limit(ctx, 'max_length')} characters long",
    "too_short": lambda ctx: f"must have at least {_items(ctx.get('min_length'))}",
    "too_long": lambda ctx: f"must have at most {_items(ctx.get('max_length'))}",
    "uuid_parsing": lambda ctx: "must be a UUID",
    "string_pattern_mismatch": lambda ctx: "has characters that are not allowed",
}


def describe_error(error: Mapping[str, Any]) -> dict[str, str]:
    """One error as `{"field", "message", "type"}`, the message a whole sentence."""
    loc = tuple(error.get("loc") or ())
    kind = str(error.get("type", "value_error"))
    ctx: Mapping[str, Any] = error.get("ctx") or {}
    name = field_name(loc)
    phrase = _PHRASES.get(kind)
    if phrase is not None:
        message = f"{name} {phrase(ctx)}"
    elif kind in ("value_error", "assertion_error") and "error" in ctx:
        # Our own validators raise ValueError with a phrase meant to follow the name.
        message = f"{name} {ctx['error']}"
    else:
        message = f"{name}: {str(error.get('msg', 'is not valid')).rstrip('.').lower()}"
    if kind in _PLURAL_ITEMS and ctx.get("actual_length") is not None:
        message += f" (got {ctx['actual_length']})"
    elif loc and loc[0] in ("query", "path", "header") and kind != "missing":
        shown = _shown(error.get("input"))
        if len(shown) <= _ECHO_LIMIT:
            message += f" (got {shown})"
    return {"field": name, "message": message, "type": kind}


def summarize(details: list[dict[str, str]]) -> str:
    """The one sentence that heads the error body."""
    if not details:
        return "The request is not valid."
    sentence = details[0]["message"]
    if sentence.startswith("the "):
        sentence = "The " + sentence[len("the ") :]
    others = len(details) - 1
    if others:
        sentence += f" (and {others} more problem{'s' if others > 1 else ''}, see detail)"
    return sentence + "."
