"""The local executor: every config a background job (``scheduler.submit``), so the app sees
its progress; workers run one at a time by default (HIERPOLY_MAX_WORKERS). Ctrl-C
cancels the jobs this sweep submitted.

Importing this module does not import JAX.
"""
from __future__ import annotations

import time
from collections.abc import Callable

from hierpoly.config import RunConfig
from hierpoly.jobs.executors import outcome


class LocalExecutor:
    """Every config a background job on this machine (see module docstring)."""

    name = "local"

    def __init__(self, poll: float = 1.0):
        self.poll = poll

    def run(self, configs, store, on_done, on_note) -> list[dict]:
        from hierpoly.jobs import records, scheduler
        pending, rows = submit_all(configs, store)
        for row in rows:
            on_done(row)
        try:
            while pending:
                scheduler.supervise(store)  # a worker lost mid-sweep: recorded, and the jobs queued behind it get a new one
                live = {job.job_id: job for job in records.live_jobs(store)}  # what is live, not the table's history
                snapshot = {job_id: live.get(job_id) or records.get(job_id, store) for job_id in pending}
                for job_id, cfg in list(pending.items()):
                    job = snapshot.get(job_id)
                    if job is None:
                        rows.append(outcome(cfg, "failed", "the job disappeared from the job table"))
                    elif job.finished:
                        result = store.get(cfg.key()) if job.status == "done" else None  # the worker stored it
                        rows.append(outcome(cfg, job.status, job.message, result))
                    else:
                        if job.status == "running" and job.progress:
                            on_note(f"d={cfg.d} n={cfg.n} seed {cfg.seed} {cfg.arch}: step {job.step}")
                        continue
                    del pending[job_id]
                    on_done(rows[-1])
                if pending:
                    time.sleep(self.poll)
        except KeyboardInterrupt:
            for job_id in pending:  # the jobs are detached: stop the ones this sweep started
                scheduler.cancel(job_id, store)
            raise
        return rows


def submit_all(configs: list[RunConfig], store, submit: Callable | None = None) -> tuple[dict[str, RunConfig], list[dict]]:
    """Submit each config as a background job without waiting: ({job_id: config}, rows of the refused ones).

    ``submit(cfg, store)`` defaults to ``scheduler.submit``; the web passes its mode's rules (``policy``).
    """
    from hierpoly.jobs import budget, scheduler
    submit = submit or scheduler.submit
    ids, refused = {}, []
    for cfg in configs:
        try:
            ids[submit(cfg, store)] = cfg
        except (budget.BudgetError, scheduler.QueueFull) as err:
            refused.append(outcome(cfg, "refused", str(err)))
    return ids, refused
