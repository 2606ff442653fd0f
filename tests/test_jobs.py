"""Background jobs with real worker processes and real faults (kill -9, cancel, divergence, budget)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from hierpoly.config import RunConfig
from hierpoly.jobs import budget, doctor_queries, records, scheduler
from hierpoly.results.store import Store

pytestmark = pytest.mark.process

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = dict(d=4, n=256, m2=50, n_test=256)
# minutes of work, long enough to be killed or cancelled mid-run (200000 such steps take under 10 s); no rule stops it
LONG = dict(TINY, steps=20_000_000, patience=10**6)


@pytest.fixture(autouse=True)
def no_stray_workers(monkeypatch):
    """Idle workers exit soon; kill the workers still busy or idle when a test ends (only this store's)."""
    monkeypatch.setenv("HIERPOLY_WORKER_IDLE_S", "3")
    yield
    pids = [job.pid for job in records.list_jobs() if job.status in records.LIVE and job.pid] + doctor_queries.idle_worker_pids()
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def wait_for(predicate, timeout: float, poll: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"condition not met within {timeout} s")


def cli(*args, cache_dir, **kw):
    env = dict(os.environ, PYTHONPATH=REPO, HIERPOLY_CACHE_DIR=str(cache_dir))
    return subprocess.Popen([sys.executable, "-m", "hierpoly", *args], env=env, cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def test_four_concurrent_runs_give_one_job_then_the_store_answers(cache_dir):
    args = ["run", "--d", "4", "--n", "256", "--m2", "50", "--steps", "200", "--n-test", "256", "--json"]
    procs = [cli(*args, cache_dir=cache_dir) for _ in range(4)]
    outs = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=240)
        assert proc.returncode == 0, stderr
        outs.append(json.loads(stdout.strip().splitlines()[-1]))
    assert len({o["job_id"] for o in outs}) == 1
    assert len({(o["test_loss"], o["feature_corr"]) for o in outs}) == 1
    key = outs[0]["key"]
    listed = [j for j in records.list_jobs() if j.key == key]
    assert len(listed) == 1 and listed[0].status == "done"
    steps = [row.step for row in records.get(listed[0].job_id).progress if row.is_history]  # all its rows
    assert steps == sorted(set(steps)) and steps[-1] == 200  # one training's rows, not several interleaved
    # an identical run is answered from the store: no new job, no worker
    proc = cli(*args, cache_dir=cache_dir)
    stdout, stderr = proc.communicate(timeout=60)
    again = json.loads(stdout.strip().splitlines()[-1])
    assert again["cached"] is True and again["job_id"] == outs[0]["job_id"]
    assert again["test_loss"] == outs[0]["test_loss"] and len(records.list_jobs()) == len(listed)
    for name in ("key", "config", "status", "test_loss", "feature_corr", "train_loss", "steps", "seconds",
                 "device", "versions"):
        assert name in again
    proc = cli("jobs", "--json", cache_dir=cache_dir)
    listed = json.loads(proc.communicate(timeout=60)[0])
    assert {"job_id", "key", "status", "pid", "message", "progress"} <= set(listed[0])


def test_kill_9_gives_failed_then_resubmit_completes():
    store = Store()
    cfg = RunConfig(**TINY, steps=3000, patience=10**6)
    job_id = scheduler.submit(cfg, store)
    job = wait_for(lambda: (j := records.get(job_id, store)).step >= 100 and j, 120)
    assert job.status == "running" and job.pid
    os.kill(job.pid, signal.SIGKILL)
    t0 = time.monotonic()
    failed = wait_for(lambda: (j := records.get(job_id, store)).status == "failed" and j, 30, poll=0.5)
    assert "lost" in failed.message and time.monotonic() - t0 < 30
    assert not store.has(cfg.key())
    again = scheduler.submit(cfg, store)
    assert again != job_id
    done = scheduler.wait(again, timeout=180, store=store)
    assert done.status == "done", done.message
    assert store.get(cfg.key()).meta["steps"] == 3000


def test_a_job_queued_behind_a_killed_worker_runs_for_whoever_waits_on_it():
    store = Store()
    first = scheduler.submit(RunConfig(**LONG), store)
    second = scheduler.submit(RunConfig(**TINY, steps=200, seed=3), store)
    job = wait_for(lambda: (j := records.get(first, store)).step > 0 and j, 120)
    os.kill(job.pid, signal.SIGKILL)
    lost = wait_for(lambda: (j := records.get(first, store)).finished and j, 30, poll=0.2)  # the pid is gone at once
    assert lost.status == "failed" and "lost" in lost.message
    queued = records.get(second, store)  # reads started nothing: it waits for whoever schedules
    assert queued.status == "queued" and "no worker is waiting" in queued.message
    done = scheduler.wait(second, timeout=180, store=store)  # the CLI's run waits this way
    assert done.status == "done", done.message
    assert done.pid != job.pid and store.has(RunConfig(**TINY, steps=200, seed=3).key())


def test_cancel_and_the_queue_behind_it(cache_dir):
    store = Store()
    long_cfg, short_cfg = RunConfig(**LONG), RunConfig(**TINY, steps=200, seed=1)
    first = scheduler.submit(long_cfg, store)
    second = scheduler.submit(short_cfg, store)
    wait_for(lambda: records.get(first, store).progress, 120)
    assert records.get(second, store).status == "queued"  # one worker at a time by default
    proc = cli("cancel", first, cache_dir=cache_dir)
    assert proc.wait(timeout=60) == 0
    cancelled = scheduler.wait(first, timeout=60, store=store)
    assert cancelled.status == "cancelled" and not store.has(long_cfg.key())
    done = scheduler.wait(second, timeout=180, store=store)
    assert done.status == "done" and store.has(short_cfg.key())
    proc = cli("cancel", first, cache_dir=cache_dir)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode != 0 and stderr.startswith("error:") and stderr.strip().count("\n") == 0


def test_divergence_is_not_stored():
    store = Store()
    # plain GD far above 1/L blows up geometrically (Adam's bounded steps at lr = 1e6 do not)
    cfg = RunConfig(**TINY, steps=300, mode="layerwise", lr=1e3)
    job = scheduler.wait(scheduler.submit(cfg, store), timeout=180, store=store)
    assert job.status == "diverged" and "non-finite" in job.message
    assert not store.has(cfg.key()) and len(store) == 0


def test_budget_refuses_before_launch(monkeypatch, cache_dir):
    huge = RunConfig(d=100, n=10**9)
    with pytest.raises(budget.BudgetError, match="largest n that fits is"):
        scheduler.submit(huge)
    assert records.list_jobs() == []
    # the suggested n is the boundary of the estimate
    monkeypatch.setenv("HIERPOLY_MEMORY_BYTES", str(400 << 20))
    cfg = RunConfig(d=8, n=10**7, m2=1000)
    with pytest.raises(budget.BudgetError) as err:
        budget.check_budget(cfg)
    fit = int(str(err.value).rsplit(" ", 1)[1])
    budget.check_budget(RunConfig(d=8, n=fit, m2=1000))
    with pytest.raises(budget.BudgetError):
        budget.check_budget(RunConfig(d=8, n=fit + 1, m2=1000))
    proc = cli("run", "--d", "100", "--n", str(10**9), cache_dir=cache_dir)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode != 0 and "Traceback" not in stderr and stderr.strip().count("\n") == 0
    assert "GiB" in stderr


def test_one_worker_serves_queued_jobs_one_after_another(cache_dir, monkeypatch):
    monkeypatch.setenv("HIERPOLY_WORKER_IDLE_S", "20")
    store = Store()
    first = scheduler.submit(RunConfig(**TINY, steps=200), store)
    second = scheduler.submit(RunConfig(**TINY, steps=200, seed=1), store)
    done = [scheduler.wait(job_id, timeout=240, store=store) for job_id in (first, second)]
    assert [j.status for j in done] == ["done", "done"], [j.message for j in done]
    assert done[0].pid == done[1].pid  # warm: the second job ran in the first job's process
    assert doctor_queries.idle_worker_pids(store) == [done[0].pid]  # and it waits for more
    third = scheduler.wait(scheduler.submit(RunConfig(**TINY, steps=200, seed=2), store), timeout=240, store=store)
    assert third.status == "done" and third.pid == done[0].pid


def _stop_outside_a_write(pid: int, store: Store) -> None:
    """SIGSTOP the worker at a moment it holds no write lock on the job table (stopped inside its progress
    write, it would hold the lock for good and every writer would find the table busy: seen once in CI)."""
    import sqlite3

    for _ in range(100):
        os.kill(pid, signal.SIGSTOP)
        con = sqlite3.connect(store.directory / "jobs" / "cache.db", timeout=0.5, isolation_level=None)
        try:
            con.execute("BEGIN IMMEDIATE")
            con.execute("ROLLBACK")
            return
        except sqlite3.OperationalError:  # locked: let it finish the write and try again
            os.kill(pid, signal.SIGCONT)
            time.sleep(0.05)
        finally:
            con.close()
    raise AssertionError("the worker never left its write to the job table")


def test_a_worker_whose_heartbeat_stops_is_failed_by_its_lease(monkeypatch):
    store = Store()
    job_id = scheduler.submit(RunConfig(**LONG), store)
    job = wait_for(lambda: (j := records.get(job_id, store)).step > 0 and j, 120)
    _stop_outside_a_write(job.pid, store)  # alive, but silent
    try:
        # a short lease only once the worker cannot beat: before, a loaded machine may delay a 2 s beat past it
        monkeypatch.setattr(records, "LEASE_S", 3.0)  # the lease is the reader's: reads show the job lost
        failed = wait_for(lambda: (j := records.get(job_id, store)).status == "failed" and j, 60, poll=0.5)
        assert "no heartbeat" in failed.message
        scheduler.supervise(store)  # and whoever schedules records it
        recorded = json.loads(records.table(store).get(f"job:{job_id}"))
        assert recorded["status"] == "failed" and "no heartbeat" in recorded["message"] and doctor_queries.stale(store) == {}
    finally:
        os.kill(job.pid, signal.SIGKILL)


def test_a_worker_that_raises_marks_its_job_failed_with_the_reason(monkeypatch):
    monkeypatch.setenv("JAX_PLATFORMS", "no_such_backend")  # the worker's JAX cannot start
    store = Store()
    job = scheduler.wait(scheduler.submit(RunConfig(**TINY, steps=200), store), timeout=180, store=store)
    assert job.status == "failed" and "no_such_backend" in job.message and "\n" not in job.message


def test_a_job_whose_result_was_stored_reports_done_after_its_worker_dies():
    from test_store import make_result

    store = Store()
    cfg = RunConfig(**LONG)
    job_id = scheduler.submit(cfg, store)
    job = wait_for(lambda: (j := records.get(job_id, store)).step > 0 and j, 120)
    stored = make_result()
    store.put(type(stored)(cfg, "done", "stored", stored.metrics, stored.history, stored.samples, stored.meta))
    os.kill(job.pid, signal.SIGKILL)  # killed after the commit, before its last word
    done = wait_for(lambda: (j := records.get(job_id, store)).finished and j, 60, poll=0.5)
    assert done.status == "done" and "stored" in done.message


def test_ctrl_c_detaches_run_and_the_job_goes_on(cache_dir):
    store = Store()
    # as from a terminal: a suite started in the background (`... &`) passes SIGINT on ignored, and Python keeps it so
    proc = cli("run", "--d", "4", "--n", "256", "--m2", "50", "--n-test", "256", "--steps", str(LONG["steps"]),
               "--patience", str(LONG["patience"]), cache_dir=cache_dir,
               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    job = wait_for(lambda: next((j for j in records.list_jobs(store) if j.step > 0), None), 120)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "goes on in the background" in stderr and "Traceback" not in stderr
    later = wait_for(lambda: (j := records.get(job.job_id, store)).step > job.step and j, 60)
    assert later.status == "running"
    scheduler.cancel(job.job_id, store)
    assert scheduler.wait(job.job_id, timeout=60, store=store).status == "cancelled"


@pytest.mark.slow
def test_a_large_run_cancels_within_seconds(cache_dir):
    """Chunks are sized by time, so even d = 40, n = 200000 is never long without a cancellation check."""
    store = Store()
    job_id = scheduler.submit(RunConfig(d=40, n=200_000, n_test=1024, patience=10**6), store)
    wait_for(lambda: any(row.is_history and row.step > 0 for row in records.get(job_id, store).progress), 600, poll=0.5)
    t0 = time.monotonic()
    assert scheduler.cancel(job_id, store)
    wait_for(lambda: records.get(job_id, store).status == "cancelled", 60, poll=0.2)
    assert time.monotonic() - t0 < 10


def test_the_job_tables_write_ahead_log_stays_small():
    store = Store()
    job = scheduler.wait(scheduler.submit(RunConfig(**TINY, steps=2000, patience=10**6), store), timeout=240, store=store)
    assert job.status == "done" and len(job.progress) > 10
    log = store.directory / "jobs" / "cache.db-wal"
    size = log.stat().st_size if log.exists() else 0
    # checkpointed at records.LOG_PAGES pages and cut back to them: not the megabytes a run used to leave
    assert size <= 2 * records.LOG_PAGES * 4096 + (64 << 10), size


def test_a_transfer_is_estimated_as_g_once_and_the_second_block_per_step():
    from hierpoly.config import transfer_config

    source = RunConfig(d=20, n=32000)
    cfg = transfer_config(source, "quadratic", 1024)
    est = budget.estimate(cfg)
    assert est.flops_per_step == 6.0 * 1024 * 1000  # the ReLU block forward and backward over n values of g
    assert est.flops == 2.0 * 1024 * 20 * 400 + est.flops_per_step * cfg.steps
    assert est.flops < budget.estimate(RunConfig(d=20, n=1024)).flops / 1.5  # from scratch also steps the first block
