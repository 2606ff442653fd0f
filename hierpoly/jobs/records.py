"""The job table: its records and the reads over them.

A job is one config trained by a worker process (``python -m hierpoly.jobs.worker``,
a fresh interpreter: JAX is never forked), started detached so it outlives the
CLI or the Streamlit script that submitted it. Every process sees the same job table,
a diskcache in ``<store>/jobs``:

    job:<id>       JSON record (status, message, pid, times, total_steps, owner)
    live           JSON list of the ids of the live (queued or running) jobs, kept by ``save``
    claim:<key>    id of the latest job for a config key (one live job per key)
    rows:<id> ...  the job's progress rows, one key each, written by the worker (progress_log.py)
    beat:<id>      the worker's last heartbeat (time.time())
    cancel:<id>    present when cancellation was asked for
    idle           the workers waiting for work (JSON: {pid: {pid, start, host, beat}})
    warm           the warm worker's state (warmup.py)

What a page reads every second costs what is live, not the table's history: ``get`` and
``live_jobs`` read the live records (through ``live``) and the one job asked for, and a
job's progress rows from the last one this process has read; ``list_jobs`` reads every
record but only each finished job's newest row.

Liveness is decided from the table and /proc, never by the worker's exit path: a
running job whose pid is gone (same host) or whose heartbeat is older than LEASE_S is
lost: ``failed`` ("worker lost"), or ``done`` when its result reached the store before
the worker died. So a ``kill -9`` or a machine restart leaves an honest status, and the
config can be submitted again.

Reading never schedules: ``get``, ``list_jobs``, ``for_key`` (and the doctor's queries)
write nothing and start nothing; they show a lost worker's job as failed (or done)
without recording it, so a page polling every second is no scheduler tick. Scheduling
is ``scheduler.py``'s; the worker's side of the table is ``worker_protocol.py``'s.

A damaged record is skipped and reported (``doctor_queries.damaged``); a damaged table
raises a one-line StoreError. The table's write-ahead log is checkpointed every
LOG_PAGES pages and cut back to that size, so progress rows do not grow it by megabytes.
Importing this module does not import JAX.
"""
from __future__ import annotations

import json
import socket
import sqlite3
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass

from hierpoly import settings
from hierpoly.config import ConfigError, RunConfig
from hierpoly.failure import first_line
from hierpoly.jobs import progress_log
from hierpoly.jobs.processes import process_alive
from hierpoly.progress import Progress
from hierpoly.results import rows
from hierpoly.results.codec import StoreError
from hierpoly.results.rows import ReadOnlyCache
from hierpoly.results.store import (
    GUARDED,
    Store,
    changes,
    count_changes,
    damage_error,
    disk_is_full,
    open_cache,
    refuse_empty_file,
)

STATUSES = ("queued", "running", "done", "failed", "diverged", "cancelled")


LIVE = ("queued", "running")


LEASE_S = 20.0  # a heartbeat older than this means the worker is lost


HEARTBEAT_S = 2.0


IDLE_FRESH_S = 5.0  # an idle worker that has not polled for this long is not counted on


LOG_PAGES = 64  # the job table's write-ahead log is checkpointed at 64 pages (256 kB) and cut back to that


_REQUIRED = {"job_id": str, "key": str, "config": dict, "status": str, "message": str, "created": (int, float),
             "total_steps": int}


@dataclass(frozen=True)
class Job:
    """A snapshot of one job as seen by the reader."""

    job_id: str
    key: str
    config: RunConfig
    status: str  # queued | running | done | failed | diverged | cancelled
    message: str  # queued: the position and why it waits
    pid: int | None
    created: float
    updated: float
    heartbeat: float
    progress: tuple[Progress, ...] = ()  # the rows the worker wrote, oldest first (list_jobs: a finished job's newest)
    total_steps: int = 0  # RunConfig.total_steps: the cap (joint), T1 + T2 (layer-wise)
    owner: str | None = None  # who submitted it (a browser session), if known
    position: int | None = None  # queued: 1 = next to start
    rows: int = 0  # progress rows the worker wrote

    @property
    def finished(self) -> bool:
        return self.status not in LIVE

    @property
    def last(self) -> Progress | None:
        """The newest progress row, or None."""
        return self.progress[-1] if self.progress else None

    @property
    def step(self) -> int:
        return self.last.step if self.last is not None else 0

    def to_dict(self) -> dict:
        return {
            "job_id": self.job_id, "key": self.key, "status": self.status, "message": self.message,
            "pid": self.pid, "created": self.created, "updated": self.updated, "heartbeat": self.heartbeat,
            "total_steps": self.total_steps, "progress": self.last.to_json() if self.last else None,
            "progress_rows": self.rows, "position": self.position, "config": self.config.to_dict(),
        }


_caches: dict[str, object] = {}


def store_or_default(store: Store | None) -> Store:
    return store if store is not None else Store()


@contextmanager
def guarded(store: Store):
    """Database errors in the job table become one-line StoreErrors."""
    try:
        yield
    except GUARDED as err:
        raise damage_error(err, "the job table", store.directory / "jobs") from None


def table(store: Store):
    """The job table of a store (one diskcache per directory and process), counting changes to its records."""
    path = store.directory / "jobs"
    if str(path) not in _caches:
        with guarded(store):
            refuse_empty_file(path / "cache.db", "the job table")
            cache = open_cache(path, log_pages=LOG_PAGES)
            count_changes(cache, "job:")
            _caches[str(path)] = cache
    return _caches[str(path)]


def records_version(t) -> tuple[str, int] | None:
    """Different after every change to a job record, by any process (progress rows and beats do not count)."""
    return changes(t)


def forget_table(store: Store) -> None:
    """Close this process's handle on a store's job table (doctor replaces damaged tables)."""
    progress_log.forget(str(store.directory / "jobs"))
    cache = _caches.pop(str(store.directory / "jobs"), None)
    if cache is not None:
        cache.close()


def names(t) -> list[str]:
    """The table's text keys; rows with other keys (another program's) are doctor's to list and remove."""
    return rows.text_keys(t)


def _parse(raw) -> dict:
    """A job record from its stored text; ValueError with the reason when it is damaged."""
    if not isinstance(raw, str):
        raise ValueError("not text")
    rec = json.loads(raw)
    if not isinstance(rec, dict):
        raise ValueError("not a JSON object")
    for name, kind in _REQUIRED.items():
        if not isinstance(rec.get(name), kind):
            raise ValueError(f"field {name} missing or of the wrong type")
    RunConfig.from_dict(rec["config"])
    return rec


def _read(t, name: str) -> dict | None:
    """The record under a table key, or None when absent or damaged."""
    try:
        return _parse(t.get(name)) if name in t else None
    except (ValueError, TypeError, KeyError, ConfigError, StoreError):
        return None


def load(t, job_id: str) -> dict | None:
    return _read(t, f"job:{job_id}")


def all_records(t) -> tuple[list[dict], dict[str, str]]:
    """Every readable job record, and {job_id: reason} for the damaged ones."""
    good, bad = [], {}
    for name in _record_names(t):
        try:
            good.append(_parse(t.get(name)))
        except (ValueError, TypeError, KeyError, ConfigError, StoreError) as err:
            detail = first_line(err)
            bad[name[len("job:"):]] = detail
    return good, bad


def _record_names(t) -> list[str]:
    """The `job:` names, by a range of the key index: the table's other rows (progress rows) are many more."""
    if isinstance(t, ReadOnlyCache):  # a full disk: diskcache's own reader is not open
        return [name for name in t.iterkeys() if isinstance(name, str) and name.startswith("job:")]
    return [name for (name,) in t._sql("SELECT key FROM Cache WHERE key >= 'job:' AND key < 'job;' AND raw = 1")]


def save(t, rec: dict) -> None:
    """Write a record, and keep the live index with it (inside a write transaction)."""
    rec["updated"] = time.time()
    t.set(f"job:{rec['job_id']}", json.dumps(rec))
    live = live_ids(t)
    wanted = live | {rec["job_id"]} if rec["status"] in LIVE else live - {rec["job_id"]}
    if wanted != live or t.get("live") is None:
        t.set("live", json.dumps(sorted(wanted)))


def live_ids(t) -> set[str]:
    """Ids of the live jobs: the index, or (a table written before it) every record's status."""
    try:
        return set(json.loads(t.get("live")))
    except (TypeError, ValueError, StoreError):
        return {r["job_id"] for r in all_records(t)[0] if r["status"] in LIVE}


def live_records(t) -> list[dict]:
    """The readable records of the live jobs (a record that left LIVE meanwhile is left out)."""
    records = (load(t, job_id) for job_id in sorted(live_ids(t)))
    return [r for r in records if r is not None and r["status"] in LIVE]


def beat_time(t, rec: dict) -> float:
    try:
        return float(t.get(f"beat:{rec['job_id']}"))
    except (TypeError, ValueError, StoreError):
        return float(rec.get("heartbeat") or rec["created"])


def _snapshot(t, rec: dict, position: int | None = None, newest_only: bool = False) -> Job:
    rows = progress_log.last(t, rec["job_id"]) if newest_only else progress_log.rows(t, rec["job_id"])
    return Job(
        job_id=rec["job_id"], key=rec["key"], config=RunConfig.from_dict(rec["config"]), status=rec["status"],
        message=rec["message"], pid=rec.get("pid"), created=rec["created"], updated=rec.get("updated", rec["created"]),
        heartbeat=beat_time(t, rec), progress=rows, total_steps=rec["total_steps"],
        owner=rec.get("owner"), position=position, rows=progress_log.count(t, rec["job_id"]),
    )


def _queue_views(t, records: list[dict], only: str | None = None) -> list[Job]:
    """Snapshots of records (or of job `only`); queued ones carry their position and the reason they wait.

    A finished job's snapshot carries its newest progress row only, unless it is the one asked for.
    """
    queued = sorted((r for r in records if r["status"] == "queued"), key=lambda r: r["created"])
    running = sum(r["status"] == "running" for r in records)
    order = {r["job_id"]: i + 1 for i, r in enumerate(queued)}
    idle = sum(idle_entries(t, time.time()).values()) if queued and running < max_workers() else 0
    out = []
    for rec in records if only is None else [r for r in records if r["job_id"] == only]:
        position = order.get(rec["job_id"])
        if position is not None:
            rec = dict(rec, message=_wait_reason(position, len(queued), running, idle))
        out.append(_snapshot(t, rec, position, newest_only=only is None and rec["status"] not in LIVE))
    return out


def _wait_reason(position: int, queued: int, running: int, idle: int) -> str:
    slots = max_workers()
    if running >= slots:
        why = f"all {slots} worker slot{'s' if slots != 1 else ''} busy (HIERPOLY_MAX_WORKERS)"
    elif idle:
        why = "an idle worker is taking it"
    else:  # a worker was lost and nothing that schedules has run since (see the module docstring)
        why = "a slot is free but no worker is waiting: the next run submitted, or a cancel, starts one"
    return f"position {position} of {queued} in the queue: {why}"


def lost_reason(t, rec: dict, now: float, disk_full: bool = False) -> str | None:
    """Why a running job's worker is known to be gone, or None while it may be alive.

    disk_full: the store's disk is full now, the likeliest reason a worker died without a word.
    """
    if rec["status"] != "running":
        return None
    last = beat_time(t, rec)
    pid = rec.get("pid")
    if pid and rec.get("host") == socket.gethostname() and not process_alive(pid, rec.get("pid_start")):
        if disk_full:
            return f"disk full: worker process {pid} stopped while the disk holding the store is full"
        return f"worker lost: process {pid} is gone"
    if now - last > LEASE_S:
        return f"worker lost: no heartbeat for {now - last:.0f} s"
    return None


def idle_table(t) -> dict[str, dict]:
    """The idle workers' entries by pid (text), as the workers wrote them; {} when none or damaged."""
    try:
        entries = json.loads(t.get("idle") or "{}")
    except (TypeError, ValueError, StoreError):
        return {}
    return entries if isinstance(entries, dict) else {}


def idle_entries(t, now: float) -> dict[str, bool]:
    """The idle workers by pid: True for a worker alive that polled within IDLE_FRESH_S."""
    out = {}
    for pid, entry in idle_table(t).items():
        try:
            fresh = now - float(entry["beat"]) < IDLE_FRESH_S
            alive = entry.get("host") != socket.gethostname() or process_alive(int(entry["pid"]), entry.get("start"))
        except (TypeError, ValueError, KeyError, AttributeError):
            fresh = alive = False
        out[pid] = fresh and alive
    return out


def mark_lost(t, store: Store, records: list[dict], now: float, record: bool = True) -> None:
    """Lost workers: their jobs become failed, or done when the result reached the store (saved unless not record)."""
    full = disk_is_full(store.directory)
    for rec in records:
        reason = lost_reason(t, rec, now, full)
        if reason is None:
            continue
        if store.has(rec["key"]):
            rec.update(status="done", message=f"done (its result was stored; {reason})")
        else:
            rec.update(status="failed", message=reason)
        if record:
            save(t, rec)


def _shown(store: Store, records: list[dict]) -> list[dict]:
    """Records as they stand: a lost worker's job shown failed (or done), nothing written."""
    mark_lost(table(store), store, records, time.time(), record=False)
    return records


def max_workers() -> int:
    """Concurrent workers: $HIERPOLY_MAX_WORKERS (by default one: one GPU, or a small CPU)."""
    try:
        return max(1, int(settings.text("HIERPOLY_MAX_WORKERS")))
    except ValueError:
        return 1


def get(job_id: str, store: Store | None = None) -> Job | None:
    """The job as it stands now, or None (also for a damaged record); reads only (a lost worker's job shows failed).

    Reads the live records (for a queued job's place) and this one, and its rows since the last read.
    """
    store = store_or_default(store)

    def read():
        t = table(store)
        with guarded(store):
            records = live_records(t)
            if all(r["job_id"] != job_id for r in records) and (rec := load(t, job_id)) is not None:
                records.append(rec)
            return _queue_views(t, _shown(store, records), only=job_id)
    views = tolerated(store, read, [])
    return views[0] if views else None


def live_jobs(store: Store | None = None) -> list[Job]:
    """The queued and running jobs, newest first, with their rows; reads only the live records, as `get`.

    A job whose worker was lost is shown failed (or done) and left out.
    """
    store = store_or_default(store)

    def read():
        t = table(store)
        with guarded(store):
            return [job for job in _queue_views(t, _shown(store, live_records(t))) if job.status in LIVE]
    return sorted(tolerated(store, read, []), key=lambda j: j.created, reverse=True)


def for_key(key: str, store: Store | None = None) -> Job | None:
    """The most recent job for a config key, or None."""
    store = store_or_default(store)

    def read():
        with guarded(store):
            return table(store).get(f"claim:{key}")
    job_id = tolerated(store, read, None)
    return get(job_id, store) if isinstance(job_id, str) else None


def list_jobs(store: Store | None = None) -> list[Job]:
    """Every readable job, newest first (damaged records are left out: see `damaged`); reads only, as `get`.

    A finished job comes with its newest progress row only (``Job.rows`` counts them all): ``get`` gives
    all of them. For the Results page and the CLI's `jobs`; a page that polls asks ``live_jobs``.
    """
    store = store_or_default(store)

    def read():
        t = table(store)
        with guarded(store):
            return _queue_views(t, _shown(store, all_records(t)[0]))
    return sorted(tolerated(store, read, []), key=lambda j: j.created, reverse=True)


def tolerated(store: Store, read: Callable, empty):
    """read(); for a store the pages read (``Store.tolerate_damage``), a damaged job table is read row by row
    instead (what can still be read), and `empty` when even that fails; ``doctor_queries.table_problems`` says so."""
    return store.tolerated(read, empty, lambda err: degrade_table(store, err))


def degrade_table(store: Store, err: StoreError) -> None:
    """Read this store's job table row by row from now on (``rows.ReadOnlyCache``: writes raise err)."""
    path = str(store.directory / "jobs")
    if isinstance(_caches.get(path), ReadOnlyCache):
        return
    forget_table(store)
    try:
        _caches[path] = ReadOnlyCache(store.directory / "jobs", err)
    except (sqlite3.Error, StoreError):
        pass  # not even row by row: reads answer empty


def degraded(store: Store) -> bool:
    """Whether this process reads the store's job table row by row (see `degrade_table`)."""
    return isinstance(_caches.get(str(store.directory / "jobs")), ReadOnlyCache)

