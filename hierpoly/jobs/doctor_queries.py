"""The doctor's questions to the job table: damaged records, stale jobs, orphan entries, idle workers.

Reads write nothing; ``remove`` and ``remove_entries`` are the doctor's repairs.
"""
from __future__ import annotations

import json
import time

from hierpoly.jobs import progress_log
from hierpoly.jobs.records import (
    all_records,
    guarded,
    idle_table,
    live_ids,
    lost_reason,
    records_version,
    store_or_default,
    table,
)
from hierpoly.results.store import Store, disk_is_full

_damaged: dict[str, tuple[tuple, dict[str, str]]] = {}  # table -> (records' version, damaged records)


def damaged(store: Store | None = None) -> dict[str, str]:
    """Job records that cannot be read: {job_id: reason}. Every page asks (a banner): the records are read
    again only when one has changed since this process last read them (``records_version``)."""
    store = store_or_default(store)
    t = table(store)
    with guarded(store):
        version, kept = records_version(t), _damaged.get(str(t.directory))
        if version is None or kept is None or kept[0] != version:
            kept = (version, all_records(t)[1])
            if version is not None:
                _damaged[str(t.directory)] = kept
    return dict(kept[1])


def remove(job_id: str, store: Store | None = None) -> None:
    """Delete a job record and everything kept for it (doctor removes damaged records this way)."""
    store = store_or_default(store)
    t = table(store)
    with guarded(store), t.transact():
        progress_log.remove(t, job_id)
        for prefix in ("job", "beat", "cancel"):
            t.delete(f"{prefix}:{job_id}")
        if t.get("live") is not None:
            t.set("live", json.dumps(sorted(live_ids(t) - {job_id})))
        for name in [n for n in t.iterkeys() if n.startswith("claim:")]:
            if t.get(name) == job_id:
                t.delete(name)


def idle_worker_pids(store: Store | None = None) -> list[int]:
    """Pids of workers waiting for work (for tests and `doctor`)."""
    pids = []
    for entry in idle_table(table(store_or_default(store))).values():
        try:
            pids.append(int(entry["pid"]))
        except (TypeError, ValueError, KeyError):
            continue
    return pids


def stale(store: Store | None = None) -> dict[str, str]:
    """Jobs still marked running whose worker is gone: {job_id: reason} (reads show them failed; ``supervise`` records it)."""
    store = store_or_default(store)
    t = table(store)
    now = time.time()
    with guarded(store):
        records, _ = all_records(t)
        full = disk_is_full(store.directory)
        return {r["job_id"]: reason for r in records if (reason := lost_reason(t, r, now, full))}


def orphans(store: Store | None = None) -> list[str]:
    """Table entries that belong to no readable job (claims, progress rows, beats, cancels)."""
    store = store_or_default(store)
    t = table(store)
    with guarded(store):
        records, _ = all_records(t)
        ids = {r["job_id"] for r in records}
        out = []
        for name in t.iterkeys():
            prefix, _, rest = name.partition(":")
            if prefix == "claim":
                value = t.get(name)
                if not isinstance(value, str) or value not in ids:
                    out.append(name)
            else:
                owner = progress_log.job_of(name) or (rest if prefix in ("beat", "cancel") else None)
                if owner is not None and owner not in ids:
                    out.append(name)
        return out


def remove_entries(names: list[str], store: Store | None = None) -> None:
    """Delete job-table entries by name (doctor's repair of orphans)."""
    store = store_or_default(store)
    t = table(store)
    with guarded(store), t.transact():
        for name in names:
            t.delete(name)

