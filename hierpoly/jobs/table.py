"""Background training jobs whose state lives in the store directory.

A job is one config trained by a worker process (``python -m hierpoly.jobs.worker``,
a fresh interpreter: JAX is never forked), started detached so it outlives the
CLI or the Streamlit script that submitted it. A worker serves queued jobs one
after another while there is work, so compiled programs stay warm, and exits
after an idle timeout. Every process sees the same job table, a diskcache in
``<store>/jobs``:

    job:<id>       JSON record (status, message, pid, times, total_steps, owner)
    claim:<key>    id of the latest job for a config key (one live job per key)
    progress:<id>  JSON list of ``Progress.to_json()`` rows, written by the worker
    beat:<id>      the worker's last heartbeat (time.time())
    cancel:<id>    present when cancellation was asked for
    idle:<pid>     a worker waiting for work (JSON: pid, start, host, beat)
    warm           the warm worker's state (warmup.py)

Liveness is decided from the table and /proc, never by the worker's exit path: a
running job whose pid is gone (same host) or whose heartbeat is older than LEASE_S is
lost: ``failed`` ("worker lost"), or ``done`` when its result reached the store before
the worker died. So a ``kill -9`` or a machine restart leaves an honest status, and the
config can be submitted again.

Reading never schedules: ``get``, ``list_jobs``, ``for_key`` and the doctor's reads
write nothing and start nothing; they show a lost worker's job as failed (or done)
without recording it, so a page polling every second is no scheduler tick. One place
schedules, ``_schedule``: in one write transaction it records lost workers' jobs,
applies a change (a submit's claim, a cancel) and marks the queued jobs that get a new
worker, then starts those workers. Submit and cancel go through it, and so does
``supervise``, called by whoever waits on jobs (``wait``, the CLI's run; the local
executor's sweep) and by ``doctor --repair``. Workers take queued jobs themselves
between jobs and while idle (``next_job``), recording lost workers too. So a job queued
behind a killed worker gets a new one at the next of these, never from a page's read.

A damaged record is skipped and reported (``damaged``); a damaged table raises a
one-line StoreError. On a full disk the table is still read and nothing is scheduled;
a worker lost there is said to have stopped on a full disk. The table's write-ahead
log is checkpointed every LOG_PAGES pages and cut back to that size, so progress rows
do not grow it by megabytes. Importing this module does not import JAX.
"""
from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass

from hierpoly import locations, settings
from hierpoly.config import ConfigError, RunConfig
from hierpoly.failure import first_line
from hierpoly.jobs.budget import check_budget
from hierpoly.progress import Progress
from hierpoly.results.codec import StoreError
from hierpoly.results.store import GUARDED, DiskFull, Store, damage_error, disk_is_full, open_cache

STATUSES = ("queued", "running", "done", "failed", "diverged", "cancelled")
LIVE = ("queued", "running")
LEASE_S = 20.0  # a heartbeat older than this means the worker is lost
HEARTBEAT_S = 2.0
IDLE_FRESH_S = 5.0  # an idle worker that has not polled for this long is not counted on
LOG_PAGES = 64  # the job table's write-ahead log is checkpointed at 64 pages (256 kB) and cut back to that
_REQUIRED = {"job_id": str, "key": str, "config": dict, "status": str, "message": str, "created": (int, float),
             "total_steps": int}
_children: list[subprocess.Popen] = []  # processes this one spawned, reaped when polled


class QueueFull(ValueError):
    """A submission refused because the queue (or the visitor's share of it) is full."""


@dataclass(frozen=True)
class QueueLimits:
    """Caps on live (queued or running) jobs, checked atomically at submission."""

    total: int | None = None  # all visitors together
    per_owner: int | None = None  # one browser session


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
    progress: tuple[Progress, ...] = ()  # every row the worker wrote, oldest first
    total_steps: int = 0  # RunConfig.total_steps: the cap (joint), T1 + T2 (layer-wise)
    owner: str | None = None  # who submitted it (a browser session), if known
    position: int | None = None  # queued: 1 = next to start

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
            "progress_rows": len(self.progress), "position": self.position, "config": self.config.to_dict(),
        }


# --------------------------------------------------------------- job table
_caches: dict[str, object] = {}


def _store(store: Store | None) -> Store:
    return store if store is not None else Store()


@contextmanager
def _guard(store: Store):
    """Database errors in the job table become one-line StoreErrors."""
    try:
        yield
    except GUARDED as err:
        raise damage_error(err, "the job table", store.directory / "jobs") from None


def table(store: Store):
    """The job table of a store (one diskcache per directory and process)."""
    path = store.directory / "jobs"
    if str(path) not in _caches:
        with _guard(store):
            _caches[str(path)] = open_cache(path, log_pages=LOG_PAGES)
    return _caches[str(path)]


def forget_table(store: Store) -> None:
    """Close this process's handle on a store's job table (doctor replaces damaged tables)."""
    cache = _caches.pop(str(store.directory / "jobs"), None)
    if cache is not None:
        cache.close()


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


def _load(t, job_id: str) -> dict | None:
    return _read(t, f"job:{job_id}")


def _records(t) -> tuple[list[dict], dict[str, str]]:
    """Every readable job record, and {job_id: reason} for the damaged ones."""
    good, bad = [], {}
    for name in list(t.iterkeys()):
        if not name.startswith("job:"):
            continue
        try:
            good.append(_parse(t.get(name)))
        except (ValueError, TypeError, KeyError, ConfigError, StoreError) as err:
            detail = first_line(err)
            bad[name[len("job:"):]] = detail
    return good, bad


def _save(t, rec: dict) -> None:
    rec["updated"] = time.time()
    t.set(f"job:{rec['job_id']}", json.dumps(rec))


def _progress(t, job_id: str) -> tuple[Progress, ...]:
    try:
        rows = json.loads(t.get(f"progress:{job_id}") or "[]")
        return tuple(Progress.from_json(row) for row in rows)
    except (ValueError, TypeError, AttributeError, StoreError):
        return ()  # damaged progress: the job itself is still reported


def _beat(t, rec: dict) -> float:
    try:
        return float(t.get(f"beat:{rec['job_id']}"))
    except (TypeError, ValueError, StoreError):
        return float(rec.get("heartbeat") or rec["created"])


def _snapshot(t, rec: dict, position: int | None = None) -> Job:
    return Job(
        job_id=rec["job_id"], key=rec["key"], config=RunConfig.from_dict(rec["config"]), status=rec["status"],
        message=rec["message"], pid=rec.get("pid"), created=rec["created"], updated=rec.get("updated", rec["created"]),
        heartbeat=_beat(t, rec), progress=_progress(t, rec["job_id"]), total_steps=rec["total_steps"],
        owner=rec.get("owner"), position=position,
    )


def _queue_views(t, records: list[dict], only: str | None = None) -> list[Job]:
    """Snapshots of records (or of job `only`); queued ones carry their position and the reason they wait."""
    queued = sorted((r for r in records if r["status"] == "queued"), key=lambda r: r["created"])
    running = sum(r["status"] == "running" for r in records)
    order = {r["job_id"]: i + 1 for i, r in enumerate(queued)}
    idle = sum(_idle_entries(t, time.time()).values()) if queued and running < max_workers() else 0
    out = []
    for rec in records if only is None else [r for r in records if r["job_id"] == only]:
        position = order.get(rec["job_id"])
        if position is not None:
            rec = dict(rec, message=_wait_reason(position, len(queued), running, idle))
        out.append(_snapshot(t, rec, position))
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


# ------------------------------------------------------------ liveness
def process_start(pid: int) -> str | None:
    """Start time of a process (clock ticks since boot) from /proc, or None when not readable."""
    try:
        stat = open(f"/proc/{pid}/stat").read()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def process_alive(pid: int, start: str | None) -> bool:
    """Whether pid is a live (not zombie) process, and the same one when its start time is known."""
    try:
        stat = open(f"/proc/{pid}/stat").read()
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: fall back to a signal-0 probe
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] in ("Z", "X"):
        return False
    return start is None or fields[19] == start


def _lost_reason(t, rec: dict, now: float, disk_full: bool = False) -> str | None:
    """Why a running job's worker is known to be gone, or None while it may be alive.

    disk_full: the store's disk is full now, the likeliest reason a worker died without a word.
    """
    if rec["status"] != "running":
        return None
    last = _beat(t, rec)
    pid = rec.get("pid")
    if pid and rec.get("host") == socket.gethostname() and not process_alive(pid, rec.get("pid_start")):
        if disk_full:
            return f"disk full: worker process {pid} stopped while the disk holding the store is full"
        return f"worker lost: process {pid} is gone"
    if now - last > LEASE_S:
        return f"worker lost: no heartbeat for {now - last:.0f} s"
    return None


def _idle_entries(t, now: float) -> dict[str, bool]:
    """The idle-worker entries by table name: True for a worker alive that polled within IDLE_FRESH_S."""
    out = {}
    for name in [n for n in t.iterkeys() if n.startswith("idle:")]:
        try:
            entry = json.loads(t.get(name))
            fresh = now - float(entry["beat"]) < IDLE_FRESH_S
            alive = entry.get("host") != socket.gethostname() or process_alive(int(entry["pid"]), entry.get("start"))
        except (TypeError, ValueError, KeyError, StoreError):
            fresh = alive = False
        out[name] = fresh and alive
    return out


def _idle_workers(t, now: float) -> int:
    """Workers waiting for work; the stale entries are removed (inside a write transaction)."""
    entries = _idle_entries(t, now)
    for name in [name for name, waiting in entries.items() if not waiting]:
        t.delete(name)
    return sum(entries.values())


def idle_worker_pids(store: Store | None = None) -> list[int]:
    """Pids of workers waiting for work (for tests and `doctor`)."""
    t = table(_store(store))
    pids = []
    for name in [n for n in t.iterkeys() if n.startswith("idle:")]:
        try:
            pids.append(int(json.loads(t.get(name))["pid"]))
        except (TypeError, ValueError, KeyError, StoreError):
            continue
    return pids


def _reap_children() -> None:
    for proc in list(_children):
        if proc.poll() is not None:
            _children.remove(proc)


def _mark_lost(t, store: Store, records: list[dict], now: float, save: bool = True) -> None:
    """Lost workers: their jobs become failed, or done when the result reached the store (saved unless not save)."""
    full = disk_is_full(store.directory)
    for rec in records:
        reason = _lost_reason(t, rec, now, full)
        if reason is None:
            continue
        if store.has(rec["key"]):
            rec.update(status="done", message=f"done (its result was stored; {reason})")
        else:
            rec.update(status="failed", message=reason)
        if save:
            _save(t, rec)


def _shown(store: Store) -> list[dict]:
    """The readable records as they stand: a lost worker's job shown failed (or done), nothing written."""
    t = table(store)
    with _guard(store):
        records, _ = _records(t)
        _mark_lost(t, store, records, time.time(), save=False)
    return records


def _plan(t, records: list[dict], now: float) -> list[dict]:
    """The queued jobs that get a new worker now, marked starting (inside a write transaction)."""
    running = sum(r["status"] == "running" for r in records)
    queued = sorted((r for r in records if r["status"] == "queued"), key=lambda r: r["created"])
    if not queued or running >= max_workers():
        return []
    # idle workers take queued jobs themselves (warm programs); start new ones only beyond them
    wanted = min(max_workers() - running, len(queued)) - _idle_workers(t, now)
    to_start = queued[: max(0, wanted)]
    for rec in to_start:
        # a launch holds its slot through the heartbeat lease until the worker beats
        rec.update(status="running", message="starting", heartbeat=now, host=socket.gethostname())
        _save(t, rec)
    return to_start


def _schedule(store: Store, change: Callable | None = None):
    """The one place that schedules; returns what change returned.

    In one write transaction: lost workers' jobs are recorded, change(t, records) is applied
    (a submit's claim, a cancel; it edits records in place and appends new ones) and the
    queued jobs that get a new worker are marked starting. Then those workers are started.
    """
    _reap_children()
    t = table(store)
    now = time.time()
    with _guard(store):
        with t.transact():
            records, _ = _records(t)
            _mark_lost(t, store, records, now)
            out = change(t, records) if change is not None else None
            to_start = _plan(t, records, now)
        for rec in to_start:
            _launch(store, rec)
    return out


def supervise(store: Store | None = None) -> None:
    """Record lost workers' jobs, then start workers for queued jobs while slots are free.

    For whoever waits on jobs without changing the table (``wait``, the local executor's
    sweep loop) and for ``doctor --repair``; reads never call it. It takes the write lock
    only when there is something to do, and on a full disk it records and starts nothing.
    """
    store = _store(store)
    t, now = table(store), time.time()
    with _guard(store):
        records, _ = _records(t)
        lost = any(_lost_reason(t, r, now) for r in records)
        startable = any(r["status"] == "queued" for r in records) and \
            sum(r["status"] == "running" for r in records) < max_workers()
    if not (lost or startable):  # most calls: the write lock is the worker's progress rows' too
        return
    try:
        _schedule(store)
    except DiskFull:
        pass  # nothing can be recorded or started; reads still show a lost worker's job as failed


def max_workers() -> int:
    """Concurrent workers: $HIERPOLY_MAX_WORKERS (by default one: one GPU, or a small CPU)."""
    try:
        return max(1, int(settings.text("HIERPOLY_MAX_WORKERS")))
    except ValueError:
        return 1


def spawn(store: Store, module: str, args: list[str], log_name: str) -> subprocess.Popen:
    """Start `python -m module args` detached, on this store, logging to <store>/jobs/logs/<log_name>.log; OSError if it cannot."""
    env = dict(os.environ, HIERPOLY_CACHE_DIR=str(store.directory.resolve()))  # the child's cwd is the store
    env["PYTHONPATH"] = locations.child_pythonpath(env.get("PYTHONPATH"))  # this same hierpoly, checkout or installed
    logs = store.directory / "jobs" / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    with open(logs / f"{log_name}.log", "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", module, *args], env=env, cwd=str(store.directory), stdin=subprocess.DEVNULL, stdout=log,
            stderr=log, start_new_session=True,  # outlives the submitter and its Ctrl-C
        )
    _children.append(proc)
    return proc


def _launch(store: Store, rec: dict) -> None:
    """Start a detached worker for a job already marked running."""
    t = table(store)
    try:
        proc = spawn(store, "hierpoly.jobs.worker", [rec["job_id"]], rec["job_id"])
    except OSError as err:
        with t.transact():
            cur = _load(t, rec["job_id"])
            if cur is not None:
                cur.update(status="failed", message=f"could not start a worker: {err}")
                _save(t, cur)
        return
    with t.transact():
        cur = _load(t, rec["job_id"])
        if cur is not None and cur["status"] == "running" and not cur.get("pid"):
            cur.update(pid=proc.pid, pid_start=process_start(proc.pid))
            _save(t, cur)


# --------------------------------------------------------------- public API
def _check_limits(records: list[dict], owner: str | None, limits: QueueLimits | None) -> None:
    if limits is None:
        return
    live = [r for r in records if r["status"] in LIVE]
    if limits.total is not None and len(live) >= limits.total:
        raise QueueFull(f"the queue is full ({len(live)} runs queued or running, at most {limits.total}): "
                        "try again when one has finished")
    mine = sum(r.get("owner") == owner for r in live) if owner is not None else 0
    if limits.per_owner is not None and owner is not None and mine >= limits.per_owner:
        raise QueueFull(f"you already have {mine} runs queued or running (at most {limits.per_owner} per visitor): "
                        "wait for one to finish or cancel it")


def submit(config: RunConfig, store: Store | None = None, *, owner: str | None = None,
           limits: QueueLimits | None = None) -> str:
    """Queue a config and return its job id; one live job per key, however many submit at once.

    Args:
        config: the run.
        store: the store (default: $HIERPOLY_CACHE_DIR).
        owner: who submits (a browser session), counted against ``limits.per_owner``.
        limits: queue caps checked atomically with the claim; a config already live is not refused.
    Returns:
        the job id. A key already in the store gives a job in status done at once.
    Raises:
        BudgetError when the config does not fit this machine; QueueFull over the limits.
    """
    store = _store(store)
    stored = store.has(config.key())
    if not stored:
        check_budget(config)
    # lost workers are recorded first, in the same transaction: their keys can be claimed again
    return _schedule(store, lambda t, records: _claim(t, records, config, stored, owner, limits))


def _claim(t, records: list[dict], config: RunConfig, stored: bool, owner: str | None,
           limits: QueueLimits | None) -> str:
    """The config's live job (or its done one when stored), else a new record, queued or done (in submit's transaction)."""
    key = config.key()
    current = t.get(f"claim:{key}")
    rec = next((r for r in records if r["job_id"] == current), None)
    if rec is not None and (rec["status"] in LIVE or (rec["status"] == "done" and stored)):
        return rec["job_id"]
    if not stored:
        _check_limits(records, owner, limits)
    now = time.time()
    rec = {
        "job_id": uuid.uuid4().hex[:16], "key": key, "config": config.to_dict(),
        "status": "done" if stored else "queued", "message": "already in the store" if stored else "waiting for a worker",
        "pid": None, "created": now, "updated": now, "heartbeat": now, "total_steps": config.total_steps, "owner": owner,
    }
    _save(t, rec)
    t.set(f"claim:{key}", rec["job_id"])
    records.append(rec)
    return rec["job_id"]


def get(job_id: str, store: Store | None = None) -> Job | None:
    """The job as it stands now, or None (also for a damaged record); reads only (a lost worker's job shows failed)."""
    store = _store(store)
    records = _shown(store)
    with _guard(store):
        views = _queue_views(table(store), records, only=job_id)
    return views[0] if views else None


def for_key(key: str, store: Store | None = None) -> Job | None:
    """The most recent job for a config key, or None."""
    store = _store(store)
    with _guard(store):
        job_id = table(store).get(f"claim:{key}")
    return get(job_id, store) if isinstance(job_id, str) else None


def list_jobs(store: Store | None = None) -> list[Job]:
    """Every readable job, newest first (damaged records are left out: see `damaged`); reads only, as `get`."""
    store = _store(store)
    records = _shown(store)
    with _guard(store):
        jobs = _queue_views(table(store), records)
    return sorted(jobs, key=lambda j: j.created, reverse=True)


def damaged(store: Store | None = None) -> dict[str, str]:
    """Job records that cannot be read: {job_id: reason}."""
    store = _store(store)
    with _guard(store):
        return _records(table(store))[1]


def remove(job_id: str, store: Store | None = None) -> None:
    """Delete a job record and everything kept for it (doctor removes damaged records this way)."""
    store = _store(store)
    t = table(store)
    with _guard(store), t.transact():
        for prefix in ("job", "progress", "beat", "cancel"):
            t.delete(f"{prefix}:{job_id}")
        for name in [n for n in t.iterkeys() if n.startswith("claim:")]:
            if t.get(name) == job_id:
                t.delete(name)


def cancel(job_id: str, store: Store | None = None) -> bool:
    """Ask a job to stop (between chunks); a queued job is cancelled at once. False if already finished."""
    return _schedule(_store(store), lambda t, records: _cancel(t, records, job_id))


def _cancel(t, records: list[dict], job_id: str) -> bool:
    rec = next((r for r in records if r["job_id"] == job_id), None)
    if rec is None or rec["status"] not in LIVE:
        return False
    t.set(f"cancel:{job_id}", "1")
    if rec["status"] == "queued":
        rec.update(status="cancelled", message="cancelled before it started")
        _save(t, rec)
    return True


def wait(job_id: str, timeout: float | None = None, poll: float = 0.5, on_update=None, store: Store | None = None) -> Job:
    """Poll until the job finishes (or timeout seconds pass); on_update(job) after each poll.

    Whoever waits keeps the queue moving (``supervise`` before each look): a worker lost
    meanwhile is recorded and a job queued behind it gets a new one.
    """
    store = _store(store)
    deadline = math.inf if timeout is None else time.monotonic() + timeout
    while True:
        supervise(store)
        job = get(job_id, store)
        if job is None:
            raise KeyError(f"no job {job_id!r}")
        if on_update is not None:
            on_update(job)
        if job.finished or time.monotonic() >= deadline:
            return job
        time.sleep(poll)


# ------------------------------------------------------------ worker side
def _take(t, rec: dict) -> dict:
    """Mark a record as run by this process."""
    rec.update(status="running", pid=os.getpid(), pid_start=process_start(os.getpid()), host=socket.gethostname(),
               message="running")
    _save(t, rec)
    t.set(f"beat:{rec['job_id']}", repr(time.time()))
    return rec


def claim_start(store: Store, job_id: str) -> dict | None:
    """Called by a worker for the job it was launched for; None when that job is no longer meant to run."""
    t = table(store)
    with t.transact():
        rec = _load(t, job_id)
        if rec is None or rec["status"] != "running" or rec.get("pid") not in (None, os.getpid()):
            return None
        return _take(t, rec)


def _idle_entry(t) -> None:
    me = os.getpid()
    entry = {"pid": me, "start": process_start(me), "host": socket.gethostname(), "beat": time.time()}
    t.set(f"idle:{me}", json.dumps(entry))


def next_job(store: Store, retire: bool = False) -> dict | None:
    """Called by an idle worker: take the oldest queued job when a slot is free, else wait registered as idle.

    It records lost workers' jobs first (as ``_schedule`` does), so a lost worker's slot is taken again.

    retire: the worker is about to exit: unregister, unless a job can still be taken
    (one transaction, so a job queued meanwhile is never left without a worker).
    """
    t = table(store)
    with t.transact():
        records, _ = _records(t)
        _mark_lost(t, store, records, time.time())  # the pool notices a lost sibling: its slot is free again
        running = sum(r["status"] == "running" for r in records)
        queued = sorted((r for r in records if r["status"] == "queued"), key=lambda r: r["created"])
        if queued and running < max_workers():
            t.delete(f"idle:{os.getpid()}")
            return _take(t, queued[0])
        if retire:
            t.delete(f"idle:{os.getpid()}")
        else:
            _idle_entry(t)
    return None


def heartbeat(store: Store, job_id: str) -> None:
    table(store).set(f"beat:{job_id}", repr(time.time()))


def add_progress(store: Store, job_id: str, row: Progress) -> None:
    """Append a progress row (only the worker writes these).

    Only the newest training row keeps its feature sample (the live scatter draws that one;
    the stored result's snapshots come from the run itself): every reader parses these rows,
    every second, for every job ever run, so they must not grow by 256 numbers a row.
    """
    t = table(store)
    with t.transact():
        rows = json.loads(t.get(f"progress:{job_id}") or "[]")
        if row.is_history and row.feature_sample:
            for old in rows:
                if old.get("phase", "training") == "training":
                    old["feature_sample"] = []
        rows.append(row.to_json())
        t.set(f"progress:{job_id}", json.dumps(rows))
        t.set(f"beat:{job_id}", repr(time.time()))


def stop_requested(store: Store, job_id: str) -> bool:
    """Cancel asked for, or the job was taken from this worker (e.g. marked lost)."""
    t = table(store)
    if f"cancel:{job_id}" in t:
        return True
    rec = _load(t, job_id)
    return rec is None or rec["status"] != "running" or rec.get("pid") not in (None, os.getpid())


def finish(store: Store, job_id: str, status: str, message: str) -> None:
    """The worker's last word on its job, unless it was already recorded lost.

    The worker registers as idle in the same transaction, so a submit in the moment before
    this worker takes the next queued job starts no second worker for it.
    """
    t = table(store)
    with t.transact():
        _idle_entry(t)
        rec = _load(t, job_id)
        if rec is None:
            return
        mine = rec["status"] == "running" and rec.get("pid") in (None, os.getpid())
        if mine or status == "done":  # a stored result is done, whoever was declared lost
            rec.update(status=status, message=message)
            _save(t, rec)


# ------------------------------------------------------------------ doctor
def stale(store: Store | None = None) -> dict[str, str]:
    """Jobs still marked running whose worker is gone: {job_id: reason} (reads show them failed; ``supervise`` records it)."""
    store = _store(store)
    t = table(store)
    now = time.time()
    with _guard(store):
        records, _ = _records(t)
        full = disk_is_full(store.directory)
        return {r["job_id"]: reason for r in records if (reason := _lost_reason(t, r, now, full))}


def orphans(store: Store | None = None) -> list[str]:
    """Table entries that belong to no readable job (claims, progress, beats, cancels)."""
    store = _store(store)
    t = table(store)
    with _guard(store):
        records, _ = _records(t)
        ids = {r["job_id"] for r in records}
        out = []
        for name in t.iterkeys():
            prefix, _, rest = name.partition(":")
            if prefix == "claim":
                value = t.get(name)
                if not isinstance(value, str) or value not in ids:
                    out.append(name)
            elif prefix in ("progress", "beat", "cancel") and rest not in ids:
                out.append(name)
        return out


def remove_entries(names: list[str], store: Store | None = None) -> None:
    """Delete job-table entries by name (doctor's repair of orphans)."""
    store = _store(store)
    t = table(store)
    with _guard(store), t.transact():
        for name in names:
            t.delete(name)
