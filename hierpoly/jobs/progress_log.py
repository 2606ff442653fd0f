"""A job's progress rows in the job table: appended one key per row by its worker, read from the last one seen.

    rows:<id>          how many rows the worker has written
    progress:<id>:<n>  row n, ``Progress.to_json()`` without its feature sample
    sample:<id>        the newest training row's feature sample: {"row": n, "values": [...]}

A row, once written, never changes, so a reader keeps the rows it has read (per process, for the
last READ_JOBS jobs it read) and fetches only the newer ones: a page polling a live job every second
reads what was added since its last look, whatever the job's or the table's history. Only the newest
training row keeps its feature sample (the live scatter draws that one; the stored result's snapshots
come from the run itself), so rows do not grow by 256 numbers each. A table written before this
layout holds each job's rows as one JSON list under ``progress:<id>``; those are still read.
"""
from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import replace

from hierpoly.progress import Progress
from hierpoly.results.codec import StoreError

READ_JOBS = 64  # jobs whose rows one process keeps after reading them
_read: OrderedDict[tuple[str, str], list[Progress]] = OrderedDict()
_DAMAGED = (ValueError, TypeError, AttributeError, KeyError, StoreError)


def append(t, job_id: str, row: Progress) -> None:
    """Add a row after the job's last (inside the worker's write transaction)."""
    n = count(t, job_id)
    data = row.to_json()
    if row.is_history and row.feature_sample:
        t.set(f"sample:{job_id}", json.dumps({"row": n, "values": data["feature_sample"]}))
        data["feature_sample"] = []
    t.set(f"progress:{job_id}:{n}", json.dumps(data))
    t.set(f"rows:{job_id}", str(n + 1))


def count(t, job_id: str) -> int:
    """Rows written for a job (a table of the older layout: the length of its list)."""
    n = _written(t, job_id)
    return len(_legacy(t, job_id)) if n is None else n


def rows(t, job_id: str, since: int = 0) -> tuple[Progress, ...]:
    """The job's rows from row `since` on, oldest first; the feature sample on the row it belongs to.

    Damaged rows end the reading there: the job itself is still reported.
    """
    n = _written(t, job_id)
    if n is None:
        return _legacy(t, job_id)[since:]
    cache_key = (str(t.directory), job_id)
    seen = _read.pop(cache_key, [])
    try:
        for i in range(len(seen), n):
            seen.append(Progress.from_json(json.loads(t.get(f"progress:{job_id}:{i}"))))
    except _DAMAGED:
        pass
    _read[cache_key] = seen
    while len(_read) > READ_JOBS:
        _read.popitem(last=False)
    return _with_sample(t, job_id, seen, since)


def last(t, job_id: str) -> tuple[Progress, ...]:
    """The newest row alone (as a one-row tuple; empty when there is none): one row read, whatever came before."""
    n = _written(t, job_id)
    if n is None:
        return _legacy(t, job_id)[-1:]
    try:
        row = Progress.from_json(json.loads(t.get(f"progress:{job_id}:{n - 1}"))) if n else None
    except _DAMAGED:
        return ()
    return () if row is None else _with_sample(t, job_id, [row], 0, first=n - 1)


def remove(t, job_id: str) -> None:
    """Delete every row kept for a job (inside a write transaction)."""
    for i in range(count(t, job_id)):
        t.delete(f"progress:{job_id}:{i}")
    for name in (f"rows:{job_id}", f"sample:{job_id}", f"progress:{job_id}"):
        t.delete(name)


def forget(directory: str) -> None:
    """Drop this process's rows read from a table (doctor replaces damaged tables)."""
    for cache_key in [k for k in _read if k[0] == directory]:
        del _read[cache_key]


def job_of(name: str) -> str | None:
    """The job id a row entry belongs to (`progress:<id>`, `progress:<id>:<n>`, `rows:<id>`, `sample:<id>`), else None."""
    prefix, _, rest = name.partition(":")
    return rest.split(":")[0] if prefix in ("progress", "rows", "sample") else None


def _with_sample(t, job_id: str, seen: list[Progress], since: int, first: int = 0) -> tuple[Progress, ...]:
    """seen[since:] with the feature sample on its row (seen[0] is row `first` of the job)."""
    out = list(seen[since:])
    try:
        sample = json.loads(t.get(f"sample:{job_id}") or "null")
        at = int(sample["row"]) - first - since if sample else -1
        if 0 <= at < len(out):
            values = tuple(float("nan") if v is None else float(v) for v in sample["values"])
            out[at] = replace(out[at], feature_sample=values)
    except _DAMAGED:
        pass
    return tuple(out)


def _written(t, job_id: str) -> int | None:
    """The row count `append` keeps (text: the table stores text), or None: a job of the older layout, or none."""
    try:
        return int(t.get(f"rows:{job_id}"))
    except (TypeError, ValueError, StoreError):
        return None


def _legacy(t, job_id: str) -> tuple[Progress, ...]:
    try:
        return tuple(Progress.from_json(row) for row in json.loads(t.get(f"progress:{job_id}") or "[]"))
    except _DAMAGED:
        return ()
