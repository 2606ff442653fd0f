"""Reading the job table never schedules; submit, cancel, supervise (wait, the sweep loop, doctor) and idle workers do.

No process is started: the worker launch (``scheduler.spawn``) is recorded, and a job's worker
is this test process (alive) until the test says it is gone by pointing its record at a
pid no process can have.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from hierpoly.config import RunConfig
from hierpoly.jobs import doctor_queries, records, scheduler, worker
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
