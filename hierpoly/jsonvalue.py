"""Plain JSON values from what runs produce: the one NaN-to-None cleaner.

Stored results' meta, progress rows, the CLI's --json and the reports all go through
``jsonable``. Pure Python, no JAX, no numpy: numpy scalars and arrays are recognised by
their ``tolist``.
"""
from __future__ import annotations

import math


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
