"""The scheduler: submit, cancel, wait, and the one place that starts workers.

A worker serves queued jobs one after another while there is work, so compiled programs
stay warm, and exits after an idle timeout (``worker_protocol.next_job``). One place
schedules, ``_schedule``: in one write transaction it records lost workers' jobs,
applies a change (a submit's claim, a cancel) and marks the queued jobs that get a new
worker, then starts those workers. Submit and cancel go through it, and so does
``supervise``, called by whoever waits on jobs (``wait``, the CLI's run; the local
executor's sweep) and by ``doctor --repair``. Workers take queued jobs themselves
between jobs and while idle, recording lost workers too. So a job queued behind a
killed worker gets a new one at the next of these, never from a page's read.

On a full disk the table is still read and nothing is scheduled; a worker lost there
is said to have stopped on a full disk. Importing this module does not import JAX.
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
from dataclasses import dataclass

from hierpoly import locations
from hierpoly.config import RunConfig
from hierpoly.jobs.budget import check_budget
from hierpoly.jobs.processes import process_start
from hierpoly.jobs.records import (
    LIVE,
    Job,
    get,
    guarded,
    idle_entries,
    idle_table,
    live_records,
    load,
    lost_reason,
    mark_lost,
    max_workers,
    save,
    store_or_default,
    table,
)
from hierpoly.results.store import DiskFull, Store

_children: list[subprocess.Popen] = []  # processes this one spawned, reaped when polled


class QueueFull(ValueError):
    """A submission refused because the queue (or the visitor's share of it) is full."""


@dataclass(frozen=True)
class QueueLimits:
    """Caps on live (queued or running) jobs, checked atomically at submission."""

    total: int | None = None  # all visitors together
    per_owner: int | None = None  # one browser session


def _reap_children() -> None:
    for proc in list(_children):
        if proc.poll() is not None:
            _children.remove(proc)


def _idle_workers(t, now: float) -> int:
    """Workers waiting for work; the stale entries are removed (inside a write transaction)."""
    entries = idle_entries(t, now)
    if not all(entries.values()):
        t.set("idle", json.dumps({pid: e for pid, e in idle_table(t).items() if entries.get(pid)}))
    return sum(entries.values())


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
        save(t, rec)
    return to_start


def _schedule(store: Store, change: Callable | None = None):
    """The one place that schedules; returns what change returned.

    In one write transaction: lost workers' jobs are recorded, change(t, records) is applied to the
    live records (a submit's claim, a cancel; it edits them in place and appends new ones) and the
    queued jobs that get a new worker are marked starting. Then those workers are started.
    """
    _reap_children()
    t = table(store)
    now = time.time()
    with guarded(store):
        with t.transact():
            records = live_records(t)
            mark_lost(t, store, records, now)
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
    store = store_or_default(store)
    t, now = table(store), time.time()
    with guarded(store):
        records = live_records(t)
        lost = any(lost_reason(t, r, now) for r in records)
        startable = any(r["status"] == "queued" for r in records) and \
            sum(r["status"] == "running" for r in records) < max_workers()
    if not (lost or startable):  # most calls: the write lock is the worker's progress rows' too
        return
    try:
        _schedule(store)
    except DiskFull:
        pass  # nothing can be recorded or started; reads still show a lost worker's job as failed


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
            cur = load(t, rec["job_id"])
            if cur is not None:
                cur.update(status="failed", message=f"could not start a worker: {err}")
                save(t, cur)
        return
    with t.transact():
        cur = load(t, rec["job_id"])
        if cur is not None and cur["status"] == "running" and not cur.get("pid"):
            cur.update(pid=proc.pid, pid_start=process_start(proc.pid))
            save(t, cur)


def limits_refusal(live_owners: list[str | None], owner: str | None, limits: QueueLimits | None) -> str | None:
    """Why one more live job for `owner` would break `limits`, or None: the one queue-limits rule.

    live_owners: the owner of each live (queued or running) job. The table checks it atomically at
    submission (``submit``); the page asks it first, to grey out Run (``policy.launch_refusal``).
    """
    if limits is None:
        return None
    mine = sum(o == owner for o in live_owners) if owner is not None else 0
    if limits.per_owner is not None and owner is not None and mine >= limits.per_owner:
        return (f"you already have {mine} runs queued or running (at most {limits.per_owner} per visitor): "
                "wait for one to finish or cancel it")
    if limits.total is not None and len(live_owners) >= limits.total:
        return (f"the queue is full ({len(live_owners)} runs queued or running, at most {limits.total}): "
                "try again when one has finished")
    return None


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
    store = store_or_default(store)
    stored = store.has(config.key())
    if not stored:
        from hierpoly.jobs.runner import retrained_source  # no JAX: the runner imports it only when running

        # the store's disk must hold the run's checkpoints; a transfer's retrained source counts with it
        check_budget(config, store.directory, retrained_source(config, store))
    # lost workers are recorded first, in the same transaction: their keys can be claimed again
    return _schedule(store, lambda t, records: _claim(t, records, config, stored, owner, limits))


def _claim(t, records: list[dict], config: RunConfig, stored: bool, owner: str | None,
           limits: QueueLimits | None) -> str:
    """The config's live job (or its done one when stored), else a new record, queued or done (in submit's transaction)."""
    key = config.key()
    current = t.get(f"claim:{key}")
    rec = next((r for r in records if r["job_id"] == current), None)
    if rec is None and isinstance(current, str):  # not live: a finished job, or none
        rec = load(t, current)
    if rec is not None and (rec["status"] in LIVE or (rec["status"] == "done" and stored)):
        return rec["job_id"]
    if not stored and (why := limits_refusal([r.get("owner") for r in records if r["status"] in LIVE], owner, limits)):
        raise QueueFull(why)
    now = time.time()
    rec = {
        "job_id": uuid.uuid4().hex[:16], "key": key, "config": config.to_dict(),
        "status": "done" if stored else "queued", "message": "already in the store" if stored else "waiting for a worker",
        "pid": None, "created": now, "updated": now, "heartbeat": now, "total_steps": config.total_steps, "owner": owner,
    }
    save(t, rec)
    t.set(f"claim:{key}", rec["job_id"])
    records.append(rec)
    return rec["job_id"]


def cancel(job_id: str, store: Store | None = None) -> bool:
    """Ask a job to stop (between chunks); a queued job is cancelled at once. False if already finished."""
    return _schedule(store_or_default(store), lambda t, records: _cancel(t, records, job_id))


def _cancel(t, records: list[dict], job_id: str) -> bool:
    rec = next((r for r in records if r["job_id"] == job_id), None)  # the live ones: a finished job is not there
    if rec is None or rec["status"] not in LIVE:
        return False
    t.set(f"cancel:{job_id}", "1")
    if rec["status"] == "queued":
        rec.update(status="cancelled", message="cancelled before it started")
        save(t, rec)
    return True


def wait(job_id: str, timeout: float | None = None, poll: float = 0.5, on_update=None, store: Store | None = None) -> Job:
    """Poll until the job finishes (or timeout seconds pass); on_update(job) after each poll.

    Whoever waits keeps the queue moving (``supervise`` before each look): a worker lost
    meanwhile is recorded and a job queued behind it gets a new one.
    """
    store = store_or_default(store)
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

