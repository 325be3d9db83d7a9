"""Task flows as files: YAML or JSON, one task flow or a list of them.

A task flow file holds `call_name`, `agent`, `description` and `prompts`::

    call_name: daily-report
    agent: default
    description: What happened yesterday
    prompts:
      - Summarise yesterday's incidents.
      - |
        Write the summary as three bullet points,
        one line each.

A list of such mappings (or `{"task_flows": [...]}`) holds several. JSON is YAML too, so
one loader reads both.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from flows.errors import TaskFlowFileError

FIELDS = ("call_name", "agent", "description", "prompts")


def portable(task_flow: dict[str, Any]) -> dict[str, Any]:
    """The part of a task flow that a file holds (no id, version or timestamps)."""
    return {field: task_flow.get(field) for field in FIELDS if task_flow.get(field) is not None}


def load_task_flows(path: Path) -> list[dict[str, Any]]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise TaskFlowFileError(f"Cannot read {path}: {exc.strerror or exc}.") from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise TaskFlowFileError(f"{path} is not valid YAML or JSON{where}.") from None
    if isinstance(document, dict) and isinstance(document.get("task_flows"), list):
        document = document["task_flows"]
    items = document if isinstance(document, list) else [document]
    for number, item in enumerate(items, start=1):
        where = f"{path}" if len(items) == 1 else f"{path}, task flow {number}"
        if not isinstance(item, dict):
            raise TaskFlowFileError(f"{where}: expected a mapping with call_name and prompts.")
        missing = [field for field in ("call_name", "prompts") if field not in item]
        if missing:
            raise TaskFlowFileError(f"{where}: {' and '.join(missing)} missing.")
    return items


def dump_task_flows(task_flows: list[dict[str, Any]], fmt: str) -> str:
    """One task flow as a mapping, several as a list; `fmt` is "yaml" or "json"."""
    document: Any = [portable(t) for t in task_flows]
    if len(document) == 1:
        document = document[0]
    if fmt == "json":
        return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    return yaml.dump(document, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)


def format_of(path: Path | None, requested: str | None) -> str:
    if requested:
        return requested
    return "json" if path is not None and path.suffix.lower() == ".json" else "yaml"


class _Dumper(yaml.SafeDumper):
    """Multi-line prompts as literal blocks, so they read as they were written."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)
