"""`python -m hierpoly.runs.worker JOB_ID`: train one job and store its result.

Started detached by jobs.py in a fresh interpreter. It beats a heartbeat from a
thread (a chunk may outlast the lease), writes progress between chunks, stops
when cancelled, stores only ``done`` results, and then starts the next queued job.
"""
from __future__ import annotations

import sys
import threading
import traceback

from hierpoly.config import RunConfig
from hierpoly.runs import jobs
from hierpoly.runs.store import Store


def _beat(store: Store, job_id: str, stop: threading.Event) -> None:
    while not stop.wait(jobs.HEARTBEAT_S):
        try:
            jobs.heartbeat(store, job_id)
        except Exception:  # a busy database must not kill the run; the next beat retries
            pass


def run_job(job_id: str, store: Store) -> str:
    """Train the job's config; returns the final status."""
    rec = jobs.claim_start(store, job_id)
    if rec is None:
        return "skipped"
    stop = threading.Event()
    threading.Thread(target=_beat, args=(store, job_id, stop), daemon=True).start()
    try:
        from hierpoly.runs import runner

        cfg = RunConfig.from_dict(rec["config"])

        def on_progress(row):
            jobs.add_progress(store, job_id, {
                "step": row.step, "train_loss": _finite(row.train_loss), "test_loss": _finite(row.test_loss),
                "feature_corr": _finite(row.feature_corr), "seconds": row.seconds,
            })

        ended = runner.execute(cfg, on_progress=on_progress, should_stop=lambda: jobs.stop_requested(store, job_id))
        if ended.result is not None:
            store.put(ended.result)
        jobs.finish(store, job_id, ended.status, ended.message)
        return ended.status
    except Exception as err:  # anything unexpected: an honest failed job with a one-line reason
        traceback.print_exc()
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        jobs.finish(store, job_id, "failed", f"{type(err).__name__}: {message}")
        return "failed"
    finally:
        stop.set()


def _finite(x: float) -> float | None:
    return x if x == x and abs(x) != float("inf") else None  # JSON has no NaN


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m hierpoly.runs.worker JOB_ID", file=sys.stderr)
        return 2
    store = Store()
    status = run_job(argv[0], store)
    jobs._supervise(store)  # this slot is free: start the next queued job
    return 0 if status in ("done", "skipped") else 1


if __name__ == "__main__":
    sys.exit(main())
