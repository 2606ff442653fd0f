"""The warm worker: its state as the sidebar reads it, what it rehearses, and a first job that compiles nothing."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest

from hierpoly.jobs import doctor_queries, processes, records, scheduler, warmup, worker
from hierpoly.results.store import Store
from hierpoly.views import tour


def _row(store: Store, **fields) -> None:
    """The warm row as a warm worker in this process would write it."""
    me = os.getpid()
    row = {"pid": me, "start": processes.process_start(me), "host": socket.gethostname(), "seconds": None, "message": "",
           **fields}
    records.table(store).set(warmup.ROW, json.dumps(row))


def test_readiness_follows_the_row_and_its_process():
    store = Store()
    assert warmup.readiness(store) == warmup.Readiness("") and warmup.describe(warmup.readiness(store)) == ""
    _row(store, state="compiling")
    state = warmup.readiness(store)
    assert not state.ready and not state.settled and warmup.describe(state) == "Preparing runs (compiling)…"
    _row(store, state="ready", seconds=12.4)
    state = warmup.readiness(store)
    assert state.ready and state.settled and state.pid == os.getpid()
    assert warmup.describe(state) == "Ready: runs start warm (compiled in 12 s)."
    _row(store, state="ready", start="0")  # the pid now names another process: the warm worker is gone
    assert warmup.readiness(store).state == "stopped"
    assert warmup.describe(warmup.readiness(store)) == "Runs start cold: the warm worker has stopped."
    _row(store, state="failed", start="0", message="MemoryError: out of memory")
    assert "the warm-up failed (MemoryError: out of memory)" in warmup.describe(warmup.readiness(store))
    _row(store, state="ready", host="another-host", start="0")  # its process cannot be seen from here
    assert warmup.readiness(store).ready
    records.table(store).set(warmup.ROW, "{not json")
    assert warmup.readiness(store).state == ""


def test_reading_readiness_writes_nothing():
    store = Store()
    _row(store, state="compiling")
    before = {name: records.table(store).get(name) for name in records.table(store).iterkeys()}
    warmup.readiness(store)
    assert {name: records.table(store).get(name) for name in records.table(store).iterkeys()} == before


def test_the_rehearsal_has_the_default_runs_shapes_under_another_key():
    for cfg in (tour.tour_config(), tour.tour_config(mode="layerwise")):
        rehearsal = warmup.rehearsal(cfg)
        shapes = ("d", "n", "k", "m1", "m2", "n_test", "n_eval", "arch", "mode", "sigma1", "link")
        assert {f: getattr(rehearsal, f) for f in shapes} == {f: getattr(cfg, f) for f in shapes}
        assert rehearsal.total_steps < 10 and rehearsal.key() != cfg.key()


@pytest.mark.parametrize("setting, wanted", [
    (None, {"local": False, "classroom": True, "gallery": False}),
    ("1", {"local": True, "classroom": True, "gallery": False}),  # a gallery runs nothing
    ("0", {"local": False, "classroom": False, "gallery": False}),
    ("yes", {"local": False, "classroom": True, "gallery": False}),  # unreadable: the default
])
def test_which_modes_start_a_warm_worker(monkeypatch, setting, wanted):
    if setting is None:
        monkeypatch.delenv("HIERPOLY_WARM", raising=False)
    else:
        monkeypatch.setenv("HIERPOLY_WARM", setting)
    assert {mode: warmup.wanted(mode) for mode in wanted} == wanted


def test_start_leaves_a_live_warm_worker_alone_and_replaces_a_stopped_one(monkeypatch):
    store = Store()
    spawned = []
    monkeypatch.setattr(scheduler, "spawn", lambda *args: spawned.append(args) or SimpleNamespace(pid=os.getpid()))
    _row(store, state="ready")
    warmup.start(store, [tour.tour_config()])
    assert spawned == []
    _row(store, state="ready", start="0")  # stopped
    warmup.start(store, [tour.tour_config()], server=12345)
    (module, args, _), = [call[1:] for call in spawned]
    assert module == "hierpoly.jobs.warmup" and args[0] == "12345"
    assert [json.loads(text) for text in args[1:]] == [tour.tour_config().to_dict()]
    assert warmup.readiness(store).state == "starting"


def test_an_idle_worker_stays_while_asked_then_retires(monkeypatch):
    monkeypatch.setattr(worker, "IDLE_POLL_S", 0.01)
    store = Store()
    asked = []
    stay = lambda: asked.append(1) or len(asked) < 5
    assert worker.wait_for_work(store, 0.0, stay) is None
    assert len(asked) == 5
    assert doctor_queries.idle_worker_pids(store) == []  # retired: no longer counted on


def _compilations(log) -> int:
    """Programs the process lowered, as JAX_LOG_COMPILES logs them (one line per program, cache hit or not)."""
    return sum(line.startswith("Compiling ") for line in log.read_text().splitlines())


def _wait_for(predicate, timeout: float):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.2)
    raise AssertionError(f"condition not met within {timeout} s")


@pytest.mark.process
def test_the_warm_workers_first_job_of_the_default_shape_compiles_nothing(monkeypatch, cache_dir):
    monkeypatch.setenv("JAX_LOG_COMPILES", "1")
    monkeypatch.setenv("HIERPOLY_WORKER_IDLE_S", "1")
    monkeypatch.delenv("HIERPOLY_XLA_CACHE_DIR", raising=False)  # the store's own: the rehearsal must compile
    server = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(900)"])  # stands for the app's server
    store = Store()
    try:
        warmup.start(store, [tour.tour_config()], server=server.pid)
        state = _wait_for(lambda: (s := warmup.readiness(store)).settled and s, 300)
        settled = time.time()
        assert state.ready, state
        (log,) = (cache_dir / "jobs" / "logs").glob("warm-*.log")
        compiled = _compilations(log)
        assert compiled > 0 and any((cache_dir / "xla").iterdir())  # compiled, and into the persistent cache too
        assert len(store) == 0  # the rehearsal stored nothing
        # past its idle timeout (1 s) it stays while the server runs: it still polls for work 2 s after it settled
        _wait_for(lambda: float(records.idle_table(records.table(store)).get(str(state.pid), {}).get("beat", 0))
                  > settled + 2, 60)
        job = scheduler.wait(scheduler.submit(tour.tour_config(), store), timeout=180, store=store)
        assert job.status == "done" and job.pid == state.pid, (job.status, job.message, job.pid, state.pid)
        assert _compilations(log) == compiled, log.read_text()[-2000:]  # its first job compiled nothing
        assert store.has(tour.tour_config().key())
    finally:
        server.kill()
        server.wait()
    _wait_for(lambda: warmup.readiness(store).state == "stopped", 60)  # no server: it retires after its idle timeout
