"""`python -m hierpoly.jobs.worker JOB_ID`: train queued jobs one after another, then exit when idle.

Started detached by the scheduler (scheduler.py) in a fresh interpreter for one job; after it, the
same process takes the next queued job while there is work, so JAX's compiled
programs are reused, and exits after $HIERPOLY_WORKER_IDLE_S seconds without
work. It beats a heartbeat from a thread (a chunk may outlast the lease),
writes progress between chunks (its side of the table: worker_protocol.py), stops when cancelled and stores only ``done``
results. Every guarantee of the job table holds per job: a kill -9 marks the job it
was running failed, cancel stops it, the concurrency cap counts it.

A full disk must not silence a worker: it keeps a small reserve file beside the
job table and, when a write fails for lack of room, deletes it so that its last
word ("disk full: ...") can still be written, then stops serving.
"""
from __future__ import annotations

import os
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from hierpoly import settings
from hierpoly.config import RunConfig
from hierpoly.failure import first_line
from hierpoly.jobs import records, worker_protocol
from hierpoly.results.store import DiskFull, Store, is_disk_full

IDLE_POLL_S = 0.25  # how often an idle worker looks for a queued job
RESERVE_BYTES = 64 << 10  # room kept for the last word on a full disk: a job record and a few log pages


def reserve_path(store: Store) -> Path:
    return store.directory / "jobs" / f"reserve-{os.getpid()}"


def make_reserve(store: Store) -> None:
    """Set aside RESERVE_BYTES on the store's disk (best effort: a disk already full gets none)."""
    try:
        with open(reserve_path(store), "wb") as fh:
            fh.write(b"\0" * RESERVE_BYTES)  # written, not sparse: the room is really taken
    except OSError:
        reserve_path(store).unlink(missing_ok=True)


def release_reserve(store: Store) -> None:
    reserve_path(store).unlink(missing_ok=True)


def _causes(err: BaseException):
    """err and the exceptions it was raised from."""
    while err is not None:
        yield err
        err = err.__cause__ or err.__context__


def disk_full_reason(err: BaseException, store: Store) -> str | None:
    """'disk full: ...' when err (or what caused it) is a full disk, else None."""
    for cause in _causes(err):
        if isinstance(cause, DiskFull) or is_disk_full(cause, store.directory):
            return f"disk full: {first_line(cause)}"
    return None


def idle_seconds() -> float:
    """How long a worker waits for more work: $HIERPOLY_WORKER_IDLE_S, default 60."""
    try:
        return max(0.0, float(settings.text("HIERPOLY_WORKER_IDLE_S")))
    except ValueError:
        return 60.0


def _beat(store: Store, job_id: str, stop: threading.Event) -> None:
    while not stop.wait(records.HEARTBEAT_S):
        try:
            worker_protocol.heartbeat(store, job_id)
        except Exception:  # a busy database must not kill the run; the next beat retries
            pass


def run_job(store: Store, rec: dict) -> str:
    """Train one claimed job's config, store a done result, record the final status; returns it."""
    job_id = rec["job_id"]
    stop = threading.Event()
    threading.Thread(target=_beat, args=(store, job_id, stop), daemon=True).start()
    try:
        from hierpoly.jobs import runner

        cfg = RunConfig.from_dict(rec["config"])
        ended = runner.execute(
            cfg,
            on_progress=lambda row: worker_protocol.add_progress(store, job_id, row),
            should_stop=lambda: worker_protocol.stop_requested(store, job_id),
            results=store,
        )
        if ended.result is not None:
            store.put(ended.result)
        worker_protocol.finish(store, job_id, ended.status, ended.message)
        return ended.status
    except Exception as err:  # anything unexpected: an honest failed job with a one-line reason
        full = disk_full_reason(err, store)
        if full is not None:
            release_reserve(store)  # the room for this last word
            worker_protocol.finish(store, job_id, "failed", full)
            return DISK_FULL
        try:
            traceback.print_exc()
        except OSError:
            pass  # the log is on a disk that may have filled meanwhile
        message = first_line(err)
        worker_protocol.finish(store, job_id, "failed", f"{type(err).__name__}: {message}")
        return "failed"
    finally:
        stop.set()


DISK_FULL = "failed: disk full"  # run_job's status when the disk filled: the worker stops serving


def wait_for_work(store: Store, idle_s: float, stay: Callable[[], bool] = lambda: False) -> dict | None:
    """The next queued job this worker may take, or None after idle_s seconds without one once stay() is False."""
    deadline = time.monotonic() + idle_s
    while time.monotonic() < deadline or stay():
        rec = worker_protocol.next_job(store)
        if rec is not None:
            return rec
        time.sleep(IDLE_POLL_S)
    return worker_protocol.next_job(store, retire=True)


def serve(store: Store, rec: dict | None, idle_s: float, stay: Callable[[], bool] = lambda: False) -> list[str]:
    """Run rec, then queued jobs while there are any (or while stay()); returns the statuses in order."""
    statuses = []
    make_reserve(store)
    try:
        while rec is not None:
            statuses.append(run_job(store, rec))
            if statuses[-1] == DISK_FULL:
                break  # the next job would fail the same way; readers see the queue as it is
            rec = wait_for_work(store, idle_s, stay)
    finally:
        release_reserve(store)
    return statuses


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m hierpoly.jobs.worker JOB_ID", file=sys.stderr)
        return 2
    store = Store()
    statuses = serve(store, worker_protocol.claim_start(store, argv[0]), idle_seconds())
    return 0 if all(s == "done" for s in statuses) else 1


if __name__ == "__main__":
    sys.exit(main())
