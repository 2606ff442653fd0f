"""Reading the job table never schedules; submit, cancel, supervise (wait, the sweep loop, doctor) and idle workers do.

No process is started: the worker launch (``scheduler.spawn``) is recorded, and a job's worker
is this test process (alive) until the test says it is gone by pointing its record at a
pid no process can have.
"""
from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import pytest

from hierpoly.config import RunConfig
from hierpoly.jobs import doctor_queries, policy, records, scheduler, worker, worker_protocol
from hierpoly.results.store import Store

TINY = dict(d=4, n=256, m2=50, n_test=256)
NO_SUCH_PID = int(Path("/proc/sys/kernel/pid_max").read_text()) + 1  # above the kernel's largest pid


@pytest.fixture
def launches(monkeypatch) -> list[str]:
    """The job ids a worker was launched for; each 'worker' is this (live) process."""
    launched = []

    def spawn(store, module, args, log_name):
        assert module == "hierpoly.jobs.worker"
        launched.append(args[0])
        return SimpleNamespace(pid=os.getpid())

    monkeypatch.setattr(scheduler, "spawn", spawn)
    return launched


def contents(store: Store) -> dict:
    """Every entry of the job table, as stored."""
    t = records.table(store)
    return {name: t.get(name) for name in t.iterkeys()}


def lose_worker(store: Store, job_id: str) -> None:
    """As after a kill -9: the job's record names a worker process that no longer exists."""
    t = records.table(store)
    rec = json.loads(t.get(f"job:{job_id}"))
    t.set(f"job:{job_id}", json.dumps(dict(rec, pid=NO_SUCH_PID, pid_start=None)))


@pytest.fixture
def stranded(launches) -> tuple[Store, str, str]:
    """A running job whose worker is gone and a job queued behind it (one worker slot), nothing recorded yet."""
    store = Store()
    first = scheduler.submit(RunConfig(**TINY, steps=200), store)
    second = scheduler.submit(RunConfig(**TINY, steps=200, seed=1), store)
    assert launches == [first] and records.get(second, store).status == "queued"
    lose_worker(store, first)
    return store, first, second


def test_reads_start_nothing_and_write_nothing(stranded, launches):
    store, first, second = stranded
    before = contents(store)
    for _ in range(3):  # a live panel's polls
        shown = {job.job_id: job for job in records.list_jobs(store)}
        lost, queued = records.get(first, store), records.get(second, store)
        assert records.for_key(RunConfig(**TINY, steps=200, seed=1).key(), store) == queued
        assert doctor_queries.stale(store) == {first: f"worker lost: process {NO_SUCH_PID} is gone"}
    assert contents(store) == before and launches == [first]
    # what a reader is shown: the lost worker's job failed, the queued one waiting and why
    assert (lost.status, lost.message) == ("failed", f"worker lost: process {NO_SUCH_PID} is gone") == (
        shown[first].status, shown[first].message)
    assert queued.status == "queued" and queued.position == 1 and "no worker is waiting" in queued.message
    assert json.loads(before[f"job:{first}"])["status"] == "running"  # recorded by no read


def test_supervise_records_the_lost_job_and_starts_the_queue_once(stranded, launches):
    store, first, second = stranded
    scheduler.supervise(store)
    assert launches == [first, second]
    assert json.loads(records.table(store).get(f"job:{first}"))["status"] == "failed"
    assert records.get(second, store).status == "running" and doctor_queries.stale(store) == {}
    before = contents(store)
    scheduler.supervise(store)  # nothing left to do: no write, no launch
    assert contents(store) == before and launches == [first, second]


def test_whoever_waits_on_a_stranded_job_gets_it_a_worker(stranded, launches):
    store, _, second = stranded
    assert scheduler.wait(second, timeout=0, store=store).status == "running"
    assert launches[-1] == second


@pytest.mark.parametrize("change", ["submit", "cancel"])
def test_a_change_records_the_lost_job_in_its_own_transaction(stranded, launches, change):
    store, first, second = stranded
    if change == "submit":  # the lost job's key can be claimed again at once
        again = scheduler.submit(RunConfig(**TINY, steps=200), store)
        assert again != first and launches == [first, second]  # the queued job first, the new one queued behind
        assert records.get(again, store).status == "queued"
    else:
        assert scheduler.cancel(first, store) is False  # lost: already finished
        assert launches == [first, second]
    assert json.loads(records.table(store).get(f"job:{first}"))["status"] == "failed"


def test_an_idle_worker_records_a_lost_sibling_and_takes_the_queue(stranded, launches):
    store, first, second = stranded
    taken = worker.wait_for_work(store, 0.0)  # this process as an idle worker: one look, then it retires
    assert taken["job_id"] == second and taken["pid"] == os.getpid()
    assert json.loads(records.table(store).get(f"job:{first}"))["status"] == "failed"
    assert launches == [first]  # taken by the worker itself, none launched


# ---------------------------------------------- the core guarantees, without processes
def test_one_live_job_per_key_however_many_submit_at_once(launches):
    store = Store()
    cfg = RunConfig(**TINY, steps=200)
    with ThreadPoolExecutor(8) as pool:  # eight visitors click Run on the same config at once
        ids = set(pool.map(lambda who: scheduler.submit(cfg, store, owner=who), [f"visitor {i}" for i in range(8)]))
    assert len(ids) == 1 and launches == list(ids)  # one job, one worker
    (job_id,) = ids
    assert scheduler.submit(cfg, store) == job_id and records.for_key(cfg.key(), store).job_id == job_id
    worker_protocol.finish(store, job_id, "failed", "stopped by the test")  # this process is its worker
    again = scheduler.submit(cfg, store)  # a finished job's key may be run again: a new job
    assert again != job_id and [j.job_id for j in records.live_jobs(store)] == [again]
    # the worker that finished waits for work (registered idle): it takes the new job, no second launch
    assert launches == [job_id] and "an idle worker is taking it" in records.get(again, store).message


def test_per_visitor_and_total_queue_limits_hold_at_submission(launches):
    store = Store()
    limits = scheduler.QueueLimits(total=3, per_owner=2)
    cfgs = [RunConfig(**TINY, steps=200, seed=s) for s in range(5)]
    alice = [scheduler.submit(cfg, store, owner="alice", limits=limits) for cfg in cfgs[:2]]
    with pytest.raises(scheduler.QueueFull, match=r"you already have 2 runs queued or running \(at most 2 per visitor\)"):
        scheduler.submit(cfgs[2], store, owner="alice", limits=limits)
    assert scheduler.submit(cfgs[0], store, owner="alice", limits=limits) == alice[0]  # a live config is no new job
    scheduler.submit(cfgs[2], store, owner="bob", limits=limits)
    with pytest.raises(scheduler.QueueFull, match=r"the queue is full \(3 runs queued or running, at most 3\)"):
        scheduler.submit(cfgs[3], store, owner="carol", limits=limits)
    assert scheduler.cancel(alice[1], store)  # queued: cancelled at once, and its place is free again
    scheduler.submit(cfgs[3], store, owner="alice", limits=limits)
    assert len(records.live_jobs(store)) == 3 and launches == [alice[0]]  # one worker slot: the rest wait


def test_the_page_refuses_in_the_words_of_the_submission(launches, monkeypatch):
    """Classroom mode: Run is greyed with the reason the submission itself gives (one limits rule)."""
    monkeypatch.setenv("HIERPOLY_MODE", "classroom")
    monkeypatch.setenv("HIERPOLY_QUEUE_LIMIT", "3")
    store = Store()
    cfgs = [RunConfig(**TINY, steps=200, seed=s) for s in range(4)]
    for cfg in cfgs[:2]:
        policy.submit_from_web(cfg, store, "alice")
    for who, cfg, words in (("alice", cfgs[2], "at most 2 per visitor"), ("carol", cfgs[3], "the queue is full")):
        if who == "carol":
            policy.submit_from_web(cfgs[2], store, "bob")
        refusal = policy.launch_refusal(cfg, store, who)
        with pytest.raises(scheduler.QueueFull) as refused:
            policy.submit_from_web(cfg, store, who)
        assert words in refusal and refusal == str(refused.value)
    assert policy.launch_refusal(cfgs[0], store, "carol") is None  # a live run is shared, never refused
    wide = RunConfig(**{**TINY, "m2": 5000}, steps=200)
    with pytest.raises(policy.PolicyError, match="at most 4096"):
        policy.submit_from_web(wide, store, "dave")
    assert len(launches) == 1
