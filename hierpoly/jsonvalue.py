"""Plain JSON values from what runs produce: the one NaN-to-None cleaner.

Stored results' meta, progress rows, the CLI's --json and the reports all go through
``jsonable``. Pure Python, no JAX, no numpy: numpy scalars and arrays are recognised by
their ``tolist``. Offered JSON (a bundle's manifest, a result.json) is read by
``loads_bounded``: nesting deeper than MAX_DEPTH is refused in one line, never a RecursionError.
"""
from __future__ import annotations

import json
import math

MAX_DEPTH = 32  # nesting of offered JSON: a result's meta needs 4


def jsonable(value):
    """Plain JSON values from numpy scalars and arrays and nested containers; non-finite floats become None (JSON has no NaN)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if hasattr(value, "tolist"):  # a numpy scalar or array
        value = value.tolist()
        return jsonable(value) if isinstance(value, list) else _finite(value)
    return _finite(value)


def _finite(value):
    return None if isinstance(value, float) and not math.isfinite(value) else value


def loads_bounded(text: str | bytes, what: str, max_depth: int = MAX_DEPTH, **options):
    """json.loads, then ValueError (one line) when nested deeper than max_depth or too deep to parse at all."""
    try:
        value = json.loads(text, **options)
    except RecursionError:
        raise ValueError(f"{what} is nested too deeply (more than {max_depth} levels)") from None
    if depth(value, max_depth) > max_depth:
        raise ValueError(f"{what} is nested too deeply (more than {max_depth} levels)")
    return value


def depth(value, stop: int) -> int:
    """How deeply lists and objects nest in value (a scalar: 0), counted without recursion, up to stop + 1."""
    deepest, todo = 0, [(value, 1)]
    while todo:
        item, level = todo.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, level)
            if level > stop:
                return level
            todo.extend((child, level + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest
