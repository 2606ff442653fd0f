"""The worker's side of the job table: take a job, beat, write progress, hear a cancel, finish.

Only a worker process calls these (``worker.py``); the scheduler marks a job running
before it starts the worker, and the worker confirms it here (``claim_start``).
"""
from __future__ import annotations

import json
import os
import socket
import time

from hierpoly.jobs import progress_log
from hierpoly.jobs.processes import process_start
from hierpoly.jobs.records import idle_table, live_records, load, mark_lost, max_workers, save, table
from hierpoly.progress import Progress
from hierpoly.results.store import Store


def _take(t, rec: dict) -> dict:
    """Mark a record as run by this process."""
    rec.update(status="running", pid=os.getpid(), pid_start=process_start(os.getpid()), host=socket.gethostname(),
               message="running")
    save(t, rec)
    t.set(f"beat:{rec['job_id']}", repr(time.time()))
    return rec


def claim_start(store: Store, job_id: str) -> dict | None:
    """Called by a worker for the job it was launched for; None when that job is no longer meant to run."""
    t = table(store)
    with t.transact():
        rec = load(t, job_id)
        if rec is None or rec["status"] != "running" or rec.get("pid") not in (None, os.getpid()):
            return None
        return _take(t, rec)


def _idle_entry(t, waiting: bool = True) -> None:
    """Register this worker as waiting for work (or, not waiting, unregister it); inside a write transaction."""
    me = os.getpid()
    entries = {pid: e for pid, e in idle_table(t).items() if pid != str(me)}
    if waiting:
        entries[str(me)] = {"pid": me, "start": process_start(me), "host": socket.gethostname(), "beat": time.time()}
    t.set("idle", json.dumps(entries))


def next_job(store: Store, retire: bool = False) -> dict | None:
    """Called by an idle worker: take the oldest queued job when a slot is free, else wait registered as idle.

    It records lost workers' jobs first (as ``_schedule`` does), so a lost worker's slot is taken again.

    retire: the worker is about to exit: unregister, unless a job can still be taken
    (one transaction, so a job queued meanwhile is never left without a worker).
    """
    t = table(store)
    with t.transact():
        records = live_records(t)
        mark_lost(t, store, records, time.time())  # the pool notices a lost sibling: its slot is free again
        running = sum(r["status"] == "running" for r in records)
        queued = sorted((r for r in records if r["status"] == "queued"), key=lambda r: r["created"])
        if queued and running < max_workers():
            _idle_entry(t, waiting=False)
            return _take(t, queued[0])
        _idle_entry(t, waiting=not retire)
    return None


def heartbeat(store: Store, job_id: str) -> None:
    table(store).set(f"beat:{job_id}", repr(time.time()))


def add_progress(store: Store, job_id: str, row: Progress) -> None:
    """Append a progress row (only the worker writes these): one new key, whatever the job's length (progress_log.py)."""
    t = table(store)
    with t.transact():
        progress_log.append(t, job_id, row)
        t.set(f"beat:{job_id}", repr(time.time()))


def stop_requested(store: Store, job_id: str) -> bool:
    """Cancel asked for, or the job was taken from this worker (e.g. marked lost)."""
    t = table(store)
    if f"cancel:{job_id}" in t:
        return True
    rec = load(t, job_id)
    return rec is None or rec["status"] != "running" or rec.get("pid") not in (None, os.getpid())


def finish(store: Store, job_id: str, status: str, message: str) -> None:
    """The worker's last word on its job, unless it was already recorded lost.

    The worker registers as idle in the same transaction, so a submit in the moment before
    this worker takes the next queued job starts no second worker for it.
    """
    t = table(store)
    with t.transact():
        _idle_entry(t)
        rec = load(t, job_id)
        if rec is None:
            return
        mine = rec["status"] == "running" and rec.get("pid") in (None, os.getpid())
        if mine or status == "done":  # a stored result is done, whoever was declared lost
            rec.update(status=status, message=message)
            save(t, rec)

