"""The Ray executor (issue 7) against a real local Ray: same results as the local executor, retries, cancel.

Skipped when Ray is not installed, unless HIERPOLY_REQUIRE_RAY=1 (CI), where that fails.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from hierpoly import cli
from hierpoly.runs import sweeps
from hierpoly.runs.executors import TASK_NAME, RayExecutor
from hierpoly.runs.store import Store

REPO = Path(__file__).resolve().parent.parent
TOL = 1e-4

try:
    import ray
except ImportError:
    if os.environ.get("HIERPOLY_REQUIRE_RAY") == "1":
        raise RuntimeError("HIERPOLY_REQUIRE_RAY=1 but Ray is not installed: pip install -r requirements-ray.txt") from None
    ray = None
needs_ray = pytest.mark.skipif(ray is None, reason="Ray is not installed (pip install -r requirements-ray.txt)")


def small_grid(seeds: int = 1, ns=(32, 64)) -> sweeps.SweepSpec:
    """Seconds per run: d = 4, 100 steps, no baselines."""
    return sweeps.custom((4,), ns=ns, seeds=seeds, baselines=False, steps=100, m2=50, n_test=512)


def task_pids() -> list[int]:
    """Ray workers now running one of our tasks (Ray titles them ``ray::<task name>``)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "cmdline").read_bytes().startswith(f"ray::{TASK_NAME}".encode()):
                    pids.append(int(entry.name))
            except OSError:
                pass
    return pids


def assert_same_results(ours: list[dict], theirs: list[dict]) -> None:
    assert [r["key"] for r in ours] == [r["key"] for r in theirs]
    for a, b in zip(ours, theirs):
        assert a["status"] == b["status"] == "done", (a, b)
        for name in ("test_loss", "feature_corr", "train_loss"):
            assert abs(a[name] - b[name]) <= TOL, (name, a, b)


# ------------------------------------------------------------ without Ray running
def test_importing_sweeps_and_executors_imports_neither_ray_nor_jax():
    code = "import sys, hierpoly.runs.sweeps, hierpoly.runs.executors; print(sorted({'ray', 'jax'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    assert "ray" in sweeps.EXECUTORS


def test_cli_refuses_address_without_the_ray_executor(capsys):
    assert cli.main(["sweep", "--preset", "tiny", "--address", "auto"]) == 2
    assert "--address is for --executor ray" in capsys.readouterr().err


def test_bad_arguments_are_one_line_errors():
    with pytest.raises(sweeps.SweepError, match="max_retries"):
        RayExecutor(max_retries=-1)
    with pytest.raises(sweeps.SweepError, match="address"):
        RayExecutor(address="  ")


@needs_ray
def test_cli_ray_and_local_give_the_same_keys_and_losses(tmp_path):
    """Issue 7's check, on a one-run grid: each executor into its own empty store."""
    grid = ["--d", "4", "--n", "32", "--steps", "100", "--no-baselines", "--json"]

    def sweep(executor: str) -> list[dict]:
        env = {**os.environ, "HIERPOLY_CACHE_DIR": str(tmp_path / executor)}
        out = subprocess.run(
            [sys.executable, "-m", "hierpoly", "sweep", *grid, "--executor", executor],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
        )
        assert out.returncode == 0, out.stderr[-2000:]
        return json.loads(out.stdout)["cells"]  # stdout is only the JSON, Ray's output goes elsewhere

    assert_same_results(sweep("ray"), sweep("local"))
    assert not task_pids()  # the CLI's own Ray went away with it


# --------------------------------------------------------------- one local Ray
@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@needs_ray
def test_ray_results_equal_the_local_executors(local_ray, tmp_path, monkeypatch):
    """A tiny grid (2 cells × 2 seeds; the full `tiny` preset is the CLI check of docs/ray.md) on Ray and locally."""
    spec = small_grid(seeds=2)
    progress = []
    on_ray = sweeps.run_sweep(spec, RayExecutor(), Store(tmp_path / "ray"), on_progress=progress.append)
    monkeypatch.setenv("HIERPOLY_MAX_WORKERS", "2")  # both CPUs for the local jobs too
    local = sweeps.run_sweep(spec, "local", Store(tmp_path / "local"))
    assert_same_results(on_ray, local)
    assert [p.done for p in progress if p.last is not None] == list(range(1, len(spec.configs()) + 1))
    # stored through the validated path: the store's results decode and carry the worker's history
    stored = Store(tmp_path / "ray")
    assert sorted(stored.keys()) == sorted(cfg.key() for cfg in spec.configs())
    assert all(len(r.history["step"]) >= 2 for r in stored.results())
    # a rerun finds everything stored and sends nothing
    again = sweeps.run_sweep(spec, RayExecutor(), stored)
    assert all(r["cached"] for r in again)


def kill_first_task(killed: list[int], stop: threading.Event) -> None:
    """SIGKILL the first Ray worker seen running a training task."""
    while not stop.is_set():
        pids = task_pids()
        if pids:
            os.kill(pids[0], signal.SIGKILL)
            killed.append(pids[0])
            return
        time.sleep(0.05)


def sweep_with_a_kill(spec, store, max_retries: int) -> tuple[list[dict], list[int]]:
    killed, stop = [], threading.Event()
    killer = threading.Thread(target=kill_first_task, args=(killed, stop))
    killer.start()
    try:
        rows = sweeps.run_sweep(spec, RayExecutor(max_retries=max_retries), store)
    finally:
        stop.set()
        killer.join()
    return rows, killed


@needs_ray
def test_a_killed_worker_is_retried_and_every_cell_written_once(local_ray, tmp_path):
    spec = small_grid(seeds=2)
    store = Store(tmp_path / "store")
    rows, killed = sweep_with_a_kill(spec, store, max_retries=2)
    assert len(killed) == 1, "no worker was seen running a task"
    assert [r["status"] for r in rows] == ["done"] * len(spec.configs()), rows
    assert sorted(store.keys()) == sorted(cfg.key() for cfg in spec.configs())  # one result per key, none extra
    assert len({r["key"] for r in rows}) == len(rows)


@needs_ray
def test_a_cell_that_fails_after_its_retries_is_reported_with_the_error(local_ray, tmp_path):
    spec = small_grid(ns=(32,))
    store = Store(tmp_path / "store")
    rows, killed = sweep_with_a_kill(spec, store, max_retries=0)
    assert len(killed) == 1
    [row] = rows
    assert row["status"] == "failed" and row["key"] == spec.configs()[0].key()
    assert "after 0 retries" in row["message"] and "Error" in row["message"], row["message"]
    assert len(store) == 0


@needs_ray
def test_interrupt_cancels_the_outstanding_tasks(local_ray, tmp_path):
    """Ctrl-C arriving while the sweep waits (here: raised by the progress callback) stops every task."""
    # 6 runs of up to 3000 steps on 2 CPUs: two running and four queued when it comes
    spec = sweeps.custom((4,), ns=(32, 64), seeds=3, baselines=False, steps=3000, m2=50, n_test=512)
    store = Store(tmp_path / "store")

    def interrupt_when_running(progress):
        if task_pids():
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        sweeps.run_sweep(spec, RayExecutor(poll=0.2), store, on_progress=interrupt_when_running)
    deadline = time.monotonic() + 10  # far shorter than the runs left alone
    while task_pids() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not task_pids(), "tasks still running after the interrupt"
    time.sleep(3)  # queued tasks would start now on the freed CPUs
    assert not task_pids(), "queued tasks started after the interrupt"
    assert len(store) == 0
