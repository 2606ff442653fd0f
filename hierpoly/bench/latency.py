"""What a person waits for: a demo run through the CLI and a worker, cold and warm.

Cold: a fresh store (no compiled programs on disk, no worker). Warm: the same shapes
again with another seed right after, so the persistent compilation cache and the idle
worker of the first run serve it (``same_worker`` says whether it did). Besides the CLI's wall time, the first live point:
seconds from launch until the job table holds the run's first history row, which is
what the Explore page draws (its live panel polls once a second). No JAX here.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

from hierpoly import locations
from hierpoly.jobs import doctor_queries, records
from hierpoly.results.store import Store

DEMO = ("--d", "6", "--n", "864", "--m2", "200", "--steps", "1000")  # the Explore page's demo run
QUICK = ("--d", "4", "--n", "256", "--m2", "50", "--steps", "100", "--n-eval", "4096")


def measure_demo(quick: bool = False, log: Callable[[str], None] = print) -> dict:
    """Wall seconds of ``python -m hierpoly run <demo> --json``, cold then warm, each one's first live point, and
    whether the warm run was trained by the cold run's worker."""
    args = QUICK if quick else DEMO
    out = {"args": " ".join(args)}
    with tempfile.TemporaryDirectory() as directory:
        # cold: a shared folder of compiled programs would serve them
        inherited = {name: value for name, value in os.environ.items() if name != "HIERPOLY_XLA_CACHE_DIR"}
        env = {**inherited, "HIERPOLY_CACHE_DIR": directory, "HIERPOLY_LOAD_PRECOMPUTED": "0", "PYTHONPATH": locations.child_pythonpath()}
        workers = []
        for label, seed in (("cold", "0"), ("warm", "1")):
            wall, first, pid = _timed_run([*args, "--seed", seed], env, Store(directory))
            out[f"seconds_{label}"], out[f"first_point_{label}"] = wall, first
            workers.append(pid)
            log(f"demo run {label}: {wall:.1f} s, first live point after {first:.1f} s")
        out["same_worker"] = workers[0] is not None and workers[0] == workers[1]
        _stop_idle_workers(Store(directory))
    return out


def _timed_run(args: list[str], env: dict, store: Store) -> tuple[float, float, int | None]:
    """(wall seconds of the CLI run, seconds until its job's first history row, the pid of the worker that ran it)."""
    before = {job.job_id for job in records.list_jobs(store)}
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "hierpoly", "run", *args, "--json"], cwd=store.directory, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = None
    while proc.poll() is None:
        if first is None and any(row.is_history for job in records.list_jobs(store) if job.job_id not in before
                                 for row in job.progress):
            first = time.perf_counter() - t0
        time.sleep(0.05)
    wall = time.perf_counter() - t0
    _, stderr = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"demo run failed: {stderr.strip().splitlines()[-1:]}")
    (job,) = [job for job in records.list_jobs(store) if job.job_id not in before]
    return wall, wall if first is None else first, job.pid


def _stop_idle_workers(store: Store) -> None:
    """The demo's store is temporary: its idle worker must not outlive it."""
    import signal

    for pid in doctor_queries.idle_worker_pids(store):
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
