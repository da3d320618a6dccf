"""Plain values: what genlab accepts as settings read from a file (a checkpoint, a cache) — None, bool, int,
float, str, and lists and string-keyed dicts of them. Nothing that could be an object to build or call."""

from __future__ import annotations

from typing import Any

PLAIN_TYPES = (type(None), bool, int, float, str)


def plain_value_problem(value: Any, where: str) -> str | None:
    """What in `value` is not plain (e.g. "hyper_parameters.x is a Popen, not a plain value"), or None."""
    if isinstance(value, PLAIN_TYPES):
        return None
    if isinstance(value, (list, tuple)):
        return next((p for i, v in enumerate(value) if (p := plain_value_problem(v, f"{where}[{i}]"))), None)
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"{where} has the non-string key {key!r}"
            if problem := plain_value_problem(item, f"{where}.{key}"):
                return problem
        return None
    return f"{where} is a {type(value).__name__}, not a plain value"


def refused_global(exc: BaseException) -> str | None:
    """What torch's weights-only unpickler refused to import ("it asks for posix.system"), or None when the
    error is not such a refusal (a file that is simply not a pickle)."""
    import re

    match = re.search(r"GLOBAL ([^\s]+)", str(exc))
    return f"it asks for {match.group(1)}" if match else None
