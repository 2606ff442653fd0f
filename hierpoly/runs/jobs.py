"""Background training jobs whose state lives in the store directory.

A job is one config trained by one worker process (``python -m hierpoly.runs.worker``,
a fresh interpreter: JAX is never forked), started detached so it outlives the
CLI or the Streamlit script that submitted it. Every process sees the same job
table, a diskcache in ``<store>/jobs``:

    job:<id>       JSON record (status, message, pid, times, total_steps)
    claim:<key>    id of the latest job for a config key (one live job per key)
    progress:<id>  JSON list of progress rows, written by the worker between chunks
    beat:<id>      the worker's last heartbeat (time.time())
    cancel:<id>    present when cancellation was asked for

Liveness is decided by whoever reads, never by the worker's exit path: a running
job whose pid is gone (same host) or whose heartbeat is older than LEASE_S is
marked ``failed`` ("worker lost"). So a ``kill -9`` or a machine restart leaves an
honest ``failed``, and the config can be submitted again.

Importing this module does not import JAX.
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
from dataclasses import dataclass, field
from pathlib import Path

from hierpoly.config import RunConfig
from hierpoly.runs.budget import check_budget
from hierpoly.runs.store import REPO, Store, open_cache

STATUSES = ("queued", "running", "done", "failed", "diverged", "cancelled")
LIVE = ("queued", "running")
LEASE_S = 20.0  # a heartbeat older than this means the worker is lost (issue: failed within 30 s)
HEARTBEAT_S = 2.0
_children: list[subprocess.Popen] = []  # workers this process started, reaped when polled


@dataclass(frozen=True)
class Job:
    """A snapshot of one job as seen by the reader."""

    job_id: str
    key: str
    config: RunConfig
    status: str  # queued | running | done | failed | diverged | cancelled
    message: str
    pid: int | None
    created: float
    updated: float
    heartbeat: float
    progress: list = field(default_factory=list)  # rows {step, train_loss, test_loss, feature_corr, seconds}
    total_steps: int = 0  # layer-wise: 2 * steps

    @property
    def finished(self) -> bool:
        return self.status not in LIVE

    def to_dict(self) -> dict:
        return {
            "job_id": self.job_id, "key": self.key, "status": self.status, "message": self.message,
            "pid": self.pid, "created": self.created, "updated": self.updated, "heartbeat": self.heartbeat,
            "total_steps": self.total_steps, "progress": self.progress[-1] if self.progress else None,
            "progress_rows": len(self.progress), "config": self.config.to_dict(),
        }


# --------------------------------------------------------------- job table
_caches: dict[str, object] = {}


def _store(store: Store | None) -> Store:
    return store if store is not None else Store()


def table(store: Store):
    """The job table of a store (one diskcache per directory and process)."""
    path = str(store.directory / "jobs")
    if path not in _caches:
        _caches[path] = open_cache(Path(path))
    return _caches[path]


def _load(t, job_id: str) -> dict | None:
    raw = t.get(f"job:{job_id}")
    return json.loads(raw) if raw else None


def _save(t, rec: dict) -> None:
    rec["updated"] = time.time()
    t.set(f"job:{rec['job_id']}", json.dumps(rec))


def _snapshot(t, rec: dict) -> Job:
    progress = json.loads(t.get(f"progress:{rec['job_id']}") or "[]")
    beat = t.get(f"beat:{rec['job_id']}")
    return Job(
        job_id=rec["job_id"], key=rec["key"], config=RunConfig.from_dict(rec["config"]), status=rec["status"],
        message=rec["message"], pid=rec.get("pid"), created=rec["created"], updated=rec["updated"],
        heartbeat=float(beat) if beat else rec.get("heartbeat", rec["created"]),
        progress=progress, total_steps=rec["total_steps"],
    )


def _process_start(pid: int) -> str | None:
    """Start time of a process (clock ticks since boot) from /proc, or None when not readable."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _process_alive(pid: int, start: str | None) -> bool:
    """Whether pid is a live (not zombie) process, and the same one when its start time is known."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
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


def _lost_reason(t, rec: dict, now: float) -> str | None:
    """Why a running job's worker is known to be gone, or None while it may be alive."""
    if rec["status"] != "running":
        return None
    beat = t.get(f"beat:{rec['job_id']}")
    last = float(beat) if beat else rec.get("heartbeat", rec["created"])
    pid = rec.get("pid")
    if pid and rec.get("host") == socket.gethostname() and not _process_alive(pid, rec.get("pid_start")):
        return f"worker lost: process {pid} is gone"
    if now - last > LEASE_S:
        return f"worker lost: no heartbeat for {now - last:.0f} s"
    return None


def _reap_children() -> None:
    for proc in list(_children):
        if proc.poll() is not None:
            _children.remove(proc)


def _supervise(store: Store) -> None:
    """Mark lost workers failed, then start queued jobs while slots are free."""
    _reap_children()
    t = table(store)
    now = time.time()
    to_start = []
    with t.transact():
        records = [json.loads(t[k]) for k in t.iterkeys() if k.startswith("job:")]
        for rec in records:
            reason = _lost_reason(t, rec, now)
            if reason:
                rec.update(status="failed", message=reason)
                _save(t, rec)
        running = sum(r["status"] == "running" for r in records)
        queued = sorted((r for r in records if r["status"] == "queued"), key=lambda r: r["created"])
        for rec in queued[: max(0, max_workers() - running)]:
            # a launch holds its slot through the heartbeat lease until the worker beats
            rec.update(status="running", message="starting", heartbeat=time.time(), host=socket.gethostname())
            _save(t, rec)
            to_start.append(rec)
    for rec in to_start:
        _launch(store, rec)


def max_workers() -> int:
    """Concurrent workers: $HIERPOLY_MAX_WORKERS, default 1 (one GPU, or a small CPU)."""
    try:
        return max(1, int(os.environ.get("HIERPOLY_MAX_WORKERS", "1")))
    except ValueError:
        return 1


def _launch(store: Store, rec: dict) -> None:
    """Start a detached worker for a job already marked running."""
    env = dict(os.environ, HIERPOLY_CACHE_DIR=str(store.directory))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    logs = store.directory / "jobs" / "logs"
    t = table(store)
    try:
        logs.mkdir(parents=True, exist_ok=True)
        with open(logs / f"{rec['job_id']}.log", "ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "hierpoly.runs.worker", rec["job_id"]],
                env=env, cwd=str(REPO), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                start_new_session=True,  # outlives the submitter and its Ctrl-C
            )
    except OSError as err:
        with t.transact():
            cur = _load(t, rec["job_id"])
            cur.update(status="failed", message=f"could not start a worker: {err}")
            _save(t, cur)
        return
    _children.append(proc)
    with t.transact():
        cur = _load(t, rec["job_id"])
        if cur["status"] == "running" and not cur.get("pid"):
            cur.update(pid=proc.pid, pid_start=_process_start(proc.pid))
            _save(t, cur)


# --------------------------------------------------------------- public API
def submit(config: RunConfig, store: Store | None = None) -> str:
    """Queue a config and return its job id; one live job per key, however many submit at once.

    A key already in the store gives a job in status done at once. Raises BudgetError
    when the config does not fit this machine.
    """
    store = _store(store)
    key = config.key()
    t = table(store)
    if not store.has(key):
        check_budget(config)
    _supervise(store)  # lost workers first, so their keys can be claimed again
    now = time.time()
    with t.transact():  # one SQLite write lock across processes: claims are atomic
        current = t.get(f"claim:{key}")
        rec = _load(t, current) if current else None
        stored = store.has(key)
        if rec is not None and (rec["status"] in LIVE or (rec["status"] == "done" and stored)):
            return rec["job_id"]
        job_id = uuid.uuid4().hex[:16]
        total = config.steps * (2 if config.mode == "layerwise" else 1)
        rec = {
            "job_id": job_id, "key": key, "config": config.to_dict(), "status": "done" if stored else "queued",
            "message": "already in the store" if stored else "waiting for a worker", "pid": None,
            "created": now, "updated": now, "heartbeat": now, "total_steps": total,
        }
        _save(t, rec)
        t.set(f"claim:{key}", job_id)
    if not stored:
        _supervise(store)
    return job_id


def get(job_id: str, store: Store | None = None) -> Job | None:
    """The job as it stands now (lost workers already marked failed), or None."""
    store = _store(store)
    _supervise(store)
    t = table(store)
    rec = _load(t, job_id)
    return _snapshot(t, rec) if rec else None


def for_key(key: str, store: Store | None = None) -> Job | None:
    """The most recent job for a config key, or None."""
    store = _store(store)
    job_id = table(store).get(f"claim:{key}")
    return get(job_id, store) if job_id else None


def list_jobs(store: Store | None = None) -> list[Job]:
    """Every job, newest first."""
    store = _store(store)
    _supervise(store)
    t = table(store)
    jobs = [_snapshot(t, json.loads(t[k])) for k in t.iterkeys() if k.startswith("job:")]
    return sorted(jobs, key=lambda j: j.created, reverse=True)


def cancel(job_id: str, store: Store | None = None) -> bool:
    """Ask a job to stop (between chunks); a queued job is cancelled at once. False if already finished."""
    store = _store(store)
    _supervise(store)
    t = table(store)
    with t.transact():
        rec = _load(t, job_id)
        if rec is None or rec["status"] not in LIVE:
            return False
        t.set(f"cancel:{job_id}", "1")
        if rec["status"] == "queued":
            rec.update(status="cancelled", message="cancelled before it started")
            _save(t, rec)
    return True


def wait(job_id: str, timeout: float | None = None, poll: float = 0.5, on_update=None, store: Store | None = None) -> Job:
    """Poll until the job finishes (or timeout seconds pass); on_update(job) after each poll."""
    store = _store(store)
    deadline = math.inf if timeout is None else time.monotonic() + timeout
    while True:
        job = get(job_id, store)
        if job is None:
            raise KeyError(f"no job {job_id!r}")
        if on_update is not None:
            on_update(job)
        if job.finished or time.monotonic() >= deadline:
            return job
        time.sleep(poll)


# ------------------------------------------------------------ worker side
def claim_start(store: Store, job_id: str) -> dict | None:
    """Called by the worker: record its pid; None when the job is no longer meant to run."""
    t = table(store)
    with t.transact():
        rec = _load(t, job_id)
        if rec is None or rec["status"] != "running":
            return None
        rec.update(pid=os.getpid(), pid_start=_process_start(os.getpid()), host=socket.gethostname(), message="running")
        _save(t, rec)
        t.set(f"beat:{job_id}", repr(time.time()))
    return rec


def heartbeat(store: Store, job_id: str) -> None:
    table(store).set(f"beat:{job_id}", repr(time.time()))


def add_progress(store: Store, job_id: str, row: dict) -> None:
    """Append a progress row (only the worker writes these)."""
    t = table(store)
    rows = json.loads(t.get(f"progress:{job_id}") or "[]")
    rows.append(row)
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
    """The worker's last word on its job, unless a reader already declared it lost."""
    t = table(store)
    with t.transact():
        rec = _load(t, job_id)
        if rec is None or rec["status"] != "running" or rec.get("pid") not in (None, os.getpid()):
            if not (status == "done" and rec is not None):
                return
        rec.update(status=status, message=message)
        _save(t, rec)
