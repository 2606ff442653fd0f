"""The Ray executor against real Rays: a `ray start --head` cluster with token auth (Ray Client,
`--address auto`, a killed worker, the Jobs API), and one Ray started in this process
(failing after retries, Ctrl-C).

Skipped when Ray is not installed, unless HIERPOLY_REQUIRE_RAY=1 (CI), where that fails.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from hierpoly import cli
from hierpoly.jobs import executors
from hierpoly.jobs.cluster import TASK_NAME, RayExecutor
from hierpoly.results.store import Store
from hierpoly.study import specs, sweep

REPO = Path(__file__).resolve().parent.parent
TOL = 1e-6  # the same program on the same CPU: equal up to float noise
SWEEP_SECONDS = 600  # a generous limit for a loaded 2-core machine, not a speed target

try:
    import ray
except ImportError:
    if os.environ.get("HIERPOLY_REQUIRE_RAY") == "1":
        raise RuntimeError("HIERPOLY_REQUIRE_RAY=1 but Ray is not installed: pip install -r requirements-ray.txt") from None
    ray = None
needs_ray = pytest.mark.skipif(ray is None, reason="Ray is not installed (pip install -r requirements-ray.txt)")


def on_cluster(test):
    """Marks of a test that drives the `ray start` cluster through CLI processes."""
    return needs_ray(pytest.mark.ray(pytest.mark.process(test)))


def small_grid(seeds: int = 1, ns=(32, 64)) -> specs.SweepSpec:
    """Seconds per run: d = 4, 100 steps, no baselines."""
    return specs.custom((4,), ns=ns, seeds=seeds, baselines=False, steps=100, m2=50, n_test=512)


def descendants(root: int) -> list[int]:
    """Every live process below ``root`` (by parent pid)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        kids = children.get(todo.pop(), [])
        found += kids
        todo += kids
    return found


def task_pids(root: int | None = None) -> list[int]:
    """Ray workers below ``root`` (default: this process) now running one of our tasks (titled ``ray::<task name>``)."""
    pids = []
    for pid in descendants(os.getpid() if root is None else root):
        try:
            if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(f"ray::{TASK_NAME}".encode()):
                pids.append(pid)
        except OSError:
            pass
    return pids


def hierpoly_cli(args: list[str], env: dict, timeout: float = SWEEP_SECONDS) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hierpoly", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def startup_seconds(env: dict) -> float:
    """What a CLI process takes before it asks Ray anything, under the machine's load now: Python, hierpoly, Ray."""
    t0 = time.monotonic()
    subprocess.run([sys.executable, "-c", "import hierpoly.cli, hierpoly.jobs.cluster, ray"], cwd=REPO, env=env,
                   check=True, timeout=120)
    return time.monotonic() - t0


def cells(out: subprocess.CompletedProcess) -> dict[str, dict]:
    """The rows of a `sweep --json`, by key (stdout is only the JSON: Ray's output goes elsewhere)."""
    assert out.returncode == 0, out.stderr[-3000:]
    return {row["key"]: row for row in json.loads(out.stdout)["cells"]}


def assert_same_losses(ours: dict[str, dict], reference: dict[str, dict]) -> None:
    for key, row in ours.items():
        assert row["status"] == reference[key]["status"] == "done", (row, reference[key])
        assert abs(row["test_loss"] - reference[key]["test_loss"]) <= TOL, (row, reference[key])


# ------------------------------------------------------------ without Ray running
@pytest.mark.process
def test_importing_sweeps_and_executors_imports_neither_ray_nor_jax():
    code = "import sys, hierpoly.study.sweep, hierpoly.jobs.executors, hierpoly.jobs.cluster, hierpoly.jobs.ray_job; print(sorted({'ray', 'jax'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    assert "ray" in executors.EXECUTORS


def test_cli_refuses_address_without_the_ray_executor(capsys):
    assert cli.main(["sweep", "--preset", "tiny", "--address", "auto"]) == 2
    assert "--address is for --executor ray" in capsys.readouterr().err


def test_bad_arguments_are_one_line_errors():
    with pytest.raises(executors.SweepError, match="max_retries"):
        RayExecutor(max_retries=-1)
    for bad in ("  ", "ray://", "host", "ray://host:port", "http://host:8265", "host:99999"):
        with pytest.raises(executors.SweepError, match="address"):
            RayExecutor(address=bad)


@needs_ray
@pytest.mark.ray
def test_a_dead_address_fails_at_once_naming_it(capsys):
    port = free_port()
    assert cli.main(["sweep", "--preset", "tiny", "--executor", "ray", "--address", f"ray://127.0.0.1:{port}"]) == 2
    assert f"nothing answers at ray://127.0.0.1:{port}" in capsys.readouterr().err


def test_a_tasks_result_is_stored_once_and_its_row_made_from_it_not_read_back(monkeypatch):
    from test_store import make_result

    from hierpoly.jobs.cluster import accept
    from hierpoly.results.codec import to_bytes

    store, result = Store(), make_result(seed=4)
    monkeypatch.setattr(Store, "get", lambda self, key: pytest.fail("the result was read back after it was written"))
    row = accept(result.config, (result.key, "done", "trained", to_bytes(result)), store)
    assert (row["status"], row["message"], row["seconds"]) == ("done", "trained", result.meta["seconds"])
    assert {name: row[name] for name in ("test_loss", "feature_corr", "train_loss")} == {
        name: result.metrics[name] for name in ("test_loss", "feature_corr", "train_loss")}
    assert store.has(result.key)


def test_a_job_log_without_a_bundle_is_a_one_line_error():
    from hierpoly.jobs.cluster import ClusterError
    from hierpoly.jobs.ray_job import BUNDLE_BEGIN, BUNDLE_END, bundle_from_log, bundle_to_log

    assert bundle_from_log("noise\n" + bundle_to_log(b"first") + "\nmore\n" + bundle_to_log(b"x" * 200) + "\n") == b"x" * 200
    for log in ("only noise", f"{BUNDLE_BEGIN}\nAAAA", f"{BUNDLE_BEGIN}\n!!not base64!!\n{BUNDLE_END}"):
        with pytest.raises(ClusterError):
            bundle_from_log(log)


def free_port() -> int:
    from tests.ray_cluster import free_ports

    return free_ports(1)[0]


# ------------------------------------------------- a `ray start --head` cluster
@pytest.fixture(scope="module")
def cluster():
    from tests import ray_cluster

    head = ray_cluster.start(dashboard=True)  # the Jobs API lives in the dashboard
    yield head
    ray_cluster.stop(head)
    assert not head.pids(), "processes of the test cluster outlived it"


@pytest.fixture(scope="module")
def local_tiny(tmp_path_factory) -> dict[str, dict]:
    """The tiny preset's network runs through --executor local (both CPUs), the reference for the cluster's results
    (a baseline is one more config through the same task: the network's runs cover the route)."""
    env = {**os.environ, "HIERPOLY_CACHE_DIR": str(tmp_path_factory.mktemp("local")), "HIERPOLY_MAX_WORKERS": "2"}
    return cells(hierpoly_cli(["sweep", "--preset", "tiny", "--no-baselines", "--executor", "local", "--json"], env))


def error_lines(stderr: str) -> list[str]:
    """The CLI's error lines (the progress bar redraws with carriage returns)."""
    return [line for line in re.split(r"[\r\n]", stderr) if line.startswith("error:") or "Traceback" in line]


@pytest.mark.slow
@on_cluster
def test_ray_client_with_the_token_matches_the_local_executor(cluster, local_tiny, tmp_path):
    """The tiny preset through ray:// (the checkout shipped as the job's working_dir): same 4 keys and losses."""
    env = cluster.env(token=True, HIERPOLY_CACHE_DIR=str(tmp_path / "client"))
    remote = cells(hierpoly_cli(["sweep", "--preset", "tiny", "--no-baselines", "--executor", "ray", "--address",
                                 cluster.client_address, "--json"], env))
    assert len(local_tiny) == 4 and sorted(remote) == sorted(local_tiny)
    assert_same_losses(remote, local_tiny)
    assert sorted(Store(tmp_path / "client").keys()) == sorted(local_tiny)  # written into the driver's store


@on_cluster
@pytest.mark.parametrize("route", ["client_address", "gcs_address"])
def test_without_the_token_a_sweep_fails_in_seconds_naming_RAY_AUTH_MODE(cluster, tmp_path, route):
    """Ray alone retries for 20-30 s and reports a bare timeout; the probe names the fix at once (ray:// and HOST:PORT)."""
    env = cluster.env(token=False, HIERPOLY_CACHE_DIR=str(tmp_path / "store"))
    startup = startup_seconds(env)
    t0 = time.monotonic()
    out = hierpoly_cli(["sweep", "--preset", "tiny", "--executor", "ray", "--address", getattr(cluster, route)], env, timeout=60)
    seconds = time.monotonic() - t0
    assert out.returncode == 2, out.stderr[-3000:]
    [line] = error_lines(out.stderr)
    assert "RAY_AUTH_MODE=token" in line and "~/.ray/auth_token" in line, line
    assert seconds - startup < 10, f"took {seconds:.1f} s, {startup:.1f} s of them starting Python, hierpoly and Ray"
    assert len(Store(tmp_path / "store")) == 0


def kill_first_task(root: int, killed: list[int], stop: threading.Event) -> None:
    """SIGKILL the first Ray worker below ``root`` seen running a training task."""
    while not stop.is_set():
        pids = task_pids(root)
        if pids:
            os.kill(pids[0], signal.SIGKILL)
            killed.append(pids[0])
            return
        time.sleep(0.05)


@pytest.mark.slow
@on_cluster
def test_address_auto_retries_a_killed_worker_and_writes_each_result_once(cluster, local_tiny, tmp_path):
    """On the head node (RAY_ADDRESS as `ray start` leaves it): a raylet worker SIGKILLed mid-sweep is retried."""
    env = cluster.env(token=True, RAY_ADDRESS=cluster.gcs_address, HIERPOLY_CACHE_DIR=str(tmp_path / "auto"))
    killed, stop = [], threading.Event()
    killer = threading.Thread(target=kill_first_task, args=(cluster.process.pid, killed, stop))
    killer.start()
    try:
        out = hierpoly_cli(["sweep", "--preset", "tiny", "--no-baselines", "--executor", "ray", "--address", "auto", "--json"], env)
    finally:
        stop.set()
        killer.join()
    assert len(killed) == 1, "no worker was seen running a task"
    rows = cells(out)
    assert sorted(rows) == sorted(local_tiny)  # the network's 4 runs of the tiny grid
    assert_same_losses(rows, local_tiny)  # the retried run gives the same numbers
    assert sorted(Store(tmp_path / "auto").keys()) == sorted(rows)  # one result per key, none extra


@on_cluster
def test_jobs_api_route_brings_the_results_back_as_a_validated_bundle(cluster, tmp_path):
    """`ray job submit --working-dir .` runs the sweep on the cluster; `sweep --fetch` imports what it printed."""
    grid = ["--d", "4", "--n", "32", "--steps", "100", "--no-baselines"]
    job_id = f"hierpoly-test-{uuid.uuid4().hex[:8]}"
    job_store = str(tmp_path / "on_the_head")  # the job's store, as the README advises (else inside the job's upload)
    runtime_env = {"excludes": ["/cache", ".git"], "env_vars": {"HIERPOLY_CACHE_DIR": job_store, "HIERPOLY_LOAD_PRECOMPUTED": "0"}}
    submit = subprocess.run(
        [sys.executable, "-m", "ray.scripts.scripts", "job", "submit", "--address", cluster.jobs_address,
         "--submission-id", job_id, "--working-dir", ".", "--runtime-env-json", json.dumps(runtime_env),
         "--", "python", "-m", "hierpoly", "sweep", *grid, "--executor", "ray", "--address", "auto", "--print-bundle"],
        cwd=REPO, env=cluster.env(token=True), capture_output=True, text=True, timeout=SWEEP_SECONDS,
    )
    assert submit.returncode == 0, (submit.stdout + submit.stderr)[-3000:]
    env = cluster.env(token=True, HIERPOLY_CACHE_DIR=str(tmp_path / "here"))
    fetched = hierpoly_cli(["sweep", *grid, "--fetch", job_id, "--address", cluster.jobs_address, "--json"], env, timeout=120)
    [row] = cells(fetched).values()
    stored = Store(tmp_path / "here").get(row["key"])
    assert row["status"] == "done" and row["test_loss"] == stored.metrics["test_loss"]  # the row is the result's
    assert stored.history["step"][-1] == 100
    refused = hierpoly_cli(["sweep", *grid, "--fetch", job_id, "--address", cluster.jobs_address], cluster.env(token=False), timeout=120)
    assert refused.returncode == 2 and "RAY_AUTH_MODE=token" in refused.stderr


# --------------------------------------------------------------- one local Ray
@pytest.fixture(scope="module")
def local_ray():
    """Ray in this process, with a token of its own: without one, Ray 2.60 writes ~/.ray/auth_token,
    which then turns token auth on for every later `ray start` on the machine."""
    saved = {name: os.environ.get(name) for name in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN")}
    os.environ.pop("RAY_AUTH_MODE", None)  # unset: ray.init turns token auth on itself, with the token below
    os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def sweep_with_a_kill(spec, store, max_retries: int) -> tuple[list[dict], list[int]]:
    killed, stop = [], threading.Event()
    killer = threading.Thread(target=kill_first_task, args=(os.getpid(), killed, stop))
    killer.start()
    try:
        rows = sweep.run_sweep(spec, RayExecutor(max_retries=max_retries), store)
    finally:
        stop.set()
        killer.join()
    return rows, killed


@needs_ray
@pytest.mark.ray
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
@pytest.mark.ray
def test_interrupt_cancels_the_outstanding_tasks(local_ray, tmp_path, monkeypatch):
    """Ctrl-C arriving while the sweep waits (here: raised by the progress callback) stops every task."""
    # 6 runs of up to 3000 steps on 2 CPUs: two running and four queued when it comes
    spec = specs.custom((4,), ns=(32, 64), seeds=3, baselines=False, steps=3000, m2=50, n_test=512)
    store = Store(tmp_path / "store")
    cancelled, cancel = [], ray.cancel
    monkeypatch.setattr(ray, "cancel", lambda ref, **kw: cancelled.append(ref) or cancel(ref, **kw))

    def interrupt_when_running(progress):
        if task_pids():
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        sweep.run_sweep(spec, RayExecutor(poll=0.2), store, on_progress=interrupt_when_running)
    assert cancelled  # the tasks still out when Ctrl-C came
    # every task has ended (cancelled, or killed while running): none is left to start on the freed CPUs
    done, waiting = ray.wait(cancelled, num_returns=len(cancelled), timeout=30)
    assert not waiting, f"{len(waiting)} tasks neither ran to an end nor were cancelled"
    deadline = time.monotonic() + 10  # far shorter than the runs left alone: the killed workers' exit
    while task_pids() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not task_pids(), "tasks still running after the interrupt"
    assert len(store) == 0


@pytest.mark.slow
@on_cluster
def test_ray_sweep_example_fast_runs_its_grid_on_the_cluster(cluster, tmp_path):
    """examples/ray_sweep.py --fast against the `ray start` cluster: both runs done, in the driver's store."""
    env = cluster.env(token=True)
    out = subprocess.run([sys.executable, str(REPO / "examples" / "ray_sweep.py"), "--fast", "--address",
                          cluster.gcs_address, "--store", str(tmp_path / "store")], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=SWEEP_SECONDS)
    assert out.returncode == 0, out.stderr[-3000:]
    assert len(re.findall(r"^\s*4\s+(64|256)\s+0\s+done\s+False", out.stdout, re.M)) == 2, out.stdout
    assert "Figure2(custom: 2 cells, d = 4; no κ" in out.stdout  # one d: nothing to fit, and it says so
    assert len(Store(tmp_path / "store")) == 2
