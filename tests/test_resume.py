"""Runs that resume: a stopped run goes on from its checkpoint and ends as the uninterrupted run does, bit for bit."""
from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from test_jobs import wait_for

from hierpoly.config import RunConfig
from hierpoly.engine import baselines, loop, train
from hierpoly.jobs import budget, cluster, doctor, doctor_queries, processes, records, runner, scheduler
from hierpoly.results import checkpoints
from hierpoly.results.codec import StoreError, from_bytes
from hierpoly.results.store import Store

REPO = Path(__file__).resolve().parent.parent
SMALL = RunConfig(d=3, n=64, m2=20, steps=600, tol=0.5, patience=100, n_test=32, n_eval=64)
# long enough to be stopped mid-run (no rule stops it before the cap), seconds to finish
LONG = RunConfig(d=3, n=64, m2=20, steps=200_000, patience=10**6, n_test=32, n_eval=64)


def _every_chunk(directory: Path, name: str) -> loop.Checkpointing:
    wired = runner.checkpointing(directory, name)
    return loop.Checkpointing(wired.load, wired.save, 0.0)


def _same_run(a, b) -> None:
    """Metrics, parameters and history (steps and losses) equal exactly; only wall times may differ."""
    assert (a.status, a.steps, a.message) == (b.status, b.steps, b.message)
    assert a.metrics == b.metrics
    for name in a.params:
        np.testing.assert_array_equal(a.params[name], b.params[name])
    assert [(r.step, r.train_loss, r.test_loss, r.feature_corr) for r in a.history] == \
        [(r.step, r.train_loss, r.test_loss, r.feature_corr) for r in b.history]


def test_a_cancelled_run_resumes_to_the_uninterrupted_result(tmp_path):
    whole = train.run(SMALL, chunk=37)  # the same chunks, so that the history rows fall on the same steps
    seen, rows = [], []
    cut = train.run(SMALL, chunk=37, checkpoint=_every_chunk(tmp_path, SMALL.key()), should_stop=lambda: len(seen) >= 4,
                    on_progress=lambda row: seen.append(row) if row.is_history else None)
    assert cut.status == "cancelled" and 0 < cut.steps < whole.steps
    saved = checkpoints.load(tmp_path, SMALL.key())
    assert saved is not None and saved[1]["steps"] == [cut.steps]
    resumed = train.run(SMALL, chunk=37, checkpoint=_every_chunk(tmp_path, SMALL.key()), on_progress=rows.append)
    _same_run(resumed, whole)
    assert [r.label for r in rows if r.phase == "resumed"] == [f"resumed from step {cut.steps}"]
    assert resumed.extra["checkpoints"]["resumed_from"] == cut.steps
    # every history row reached the progress stream once, those before the stop again after the resumed row
    assert sorted({r.step for r in rows if r.is_history}) == [r.step for r in resumed.history]


@pytest.mark.slow
def test_seed_batches_resume_too(tmp_path):
    cfgs = [RunConfig(**{**SMALL.to_dict(), "seed": s}) for s in (0, 1)]
    whole = train.run_seeds(cfgs, chunk=37)
    name, seen = checkpoints.checkpoint_name([c.key() for c in cfgs]), []
    cut = train.run_seeds(cfgs, chunk=37, checkpoint=_every_chunk(tmp_path, name), should_stop=lambda: len(seen) >= 6,
                          on_progress=lambda i, row: seen.append(row) if row.is_history else None)
    assert {r.status for r in cut} == {"cancelled"}
    resumed = train.run_seeds(cfgs, chunk=37, checkpoint=_every_chunk(tmp_path, name))
    for a, b in zip(resumed, whole):
        _same_run(a, b)


@pytest.mark.slow
def test_the_two_layer_baseline_resumes_inside_its_tuning(tmp_path):
    cfg = RunConfig(d=3, n=128, arch="two_layer", steps=400, patience=50, n_test=32, n_eval=64)
    parts = lambda part: _every_chunk(tmp_path, checkpoints.part_name(cfg.key(), part))  # noqa: E731
    whole = baselines.run(cfg, chunk=16)
    polls = []
    cut = baselines.run(cfg, chunk=16, checkpoint=parts, should_stop=lambda: polls.append(1) or len(polls) > 12)
    assert cut.status == "cancelled"
    saved = sorted(s.name.split("-")[1] for s in checkpoints.listing(tmp_path))
    assert saved and saved[0] == "trial0"  # stopped after the first trial, inside a later one
    rows = []
    resumed = baselines.run(cfg, chunk=16, checkpoint=parts, on_progress=rows.append)
    _same_run(resumed, whole)
    assert resumed.extra["holdout_losses"] == whole.extra["holdout_losses"]
    assert any(r.phase == "resumed" for r in rows)
    checkpoints.discard(tmp_path, cfg.key())  # the run's checkpoint and its parts'
    assert checkpoints.listing(tmp_path) == []


@pytest.mark.slow
def test_a_ray_task_resumes_from_its_workers_checkpoint_and_deletes_it(cache_dir):
    """What a retried Ray task runs (cluster.train_to_bytes), in the worker's default store: the run goes on."""
    whole, seen = train.run(SMALL), []
    cut = train.run(SMALL, chunk=37, checkpoint=_every_chunk(cache_dir, SMALL.key()), should_stop=lambda: len(seen) >= 4,
                    on_progress=lambda row: seen.append(row) if row.is_history else None)
    key, status, _, value = cluster.train_to_bytes(SMALL.to_dict())
    result = from_bytes(value)
    assert (key, status) == (SMALL.key(), "done") and result.meta["extra"]["checkpoints"]["resumed_from"] == cut.steps
    assert result.metrics == whole.metrics and result.meta["steps"] == whole.steps
    assert checkpoints.listing(cache_dir) == []  # the reply carries the run now


def test_a_checkpoint_never_unpickles_and_damage_starts_over(tmp_path, capsys):
    arrays = {"state_0000": np.float32(1.5), "state_0001": np.arange(3, dtype=np.int32)}
    back, doc = checkpoints.decode(checkpoints.encode(arrays, {"steps": [7]}))
    assert back["state_0000"].shape == () and back["state_0001"].tolist() == [0, 1, 2] and doc["steps"] == [7]
    pickled = io.BytesIO()
    np.save(pickled, np.array([{"x": 1}], dtype=object), allow_pickle=True)
    crafted = io.BytesIO()
    with zipfile.ZipFile(crafted, "w") as zf:
        zf.writestr("checkpoint.json", json.dumps({"format": checkpoints.FORMAT}))
        inner = io.BytesIO()
        with zipfile.ZipFile(inner, "w") as npz:
            npz.writestr("state_0000.npy", pickled.getvalue())
        zf.writestr("state.npz", inner.getvalue())
    with pytest.raises(StoreError, match="damaged checkpoint"):
        checkpoints.decode(crafted.getvalue())
    target = checkpoints.path(tmp_path, SMALL.key())
    target.parent.mkdir(parents=True)
    target.write_bytes(b"not a zip")
    assert runner.checkpointing(tmp_path, SMALL.key()).load() is None and not target.exists()
    assert "starts over" in capsys.readouterr().err
    with pytest.raises(StoreError):
        checkpoints.path(tmp_path, "../escape")


def test_doctor_lists_checkpoints_of_no_live_run_and_repair_removes_them(cache_dir):
    store = Store(cache_dir)
    mine = {"pid": os.getpid(), "start": processes.process_start(os.getpid())}
    checkpoints.save(cache_dir, "a" * 64, {"x": np.zeros(3)}, {"steps": [5], "writer": mine})  # this live process's
    checkpoints.save(cache_dir, "b" * 64, {"x": np.zeros(3)}, {"steps": [9], "writer": {"pid": 2**22 + 1}})
    (checkpoints.folder(cache_dir) / f"{'c' * 64}.ckpt.tmp-{2**22 + 1}").write_bytes(b"half")
    found = [f for f in doctor.check(store.directory) if f.what == "checkpoint"]
    assert sorted(f.name for f in found) == [f"{'b' * 64}.ckpt", f"{'c' * 64}.ckpt.tmp-{2**22 + 1}"]
    assert "belongs to no live job (saved at step 9" in found[0].problem
    doctor.repair(store.directory, found, say=lambda line: None)
    assert [s.name for s in checkpoints.listing(cache_dir)] == ["a" * 64]


def test_budgets_count_the_checkpoint(tmp_path, monkeypatch):
    cfg = RunConfig(d=32, n=4096)
    state = 3 * 4 * (cfg.m1 * (cfg.d + 2) + 3 * cfg.m2)
    assert budget.checkpoint_bytes(cfg) > state and budget.disk_bytes(cfg) == 2 * budget.checkpoint_bytes(cfg)
    assert budget.checkpoint_bytes(RunConfig(d=32, n=4096, arch="kernel")) == 0
    monkeypatch.setenv("HIERPOLY_MEMORY_BYTES", str(2 * budget.memory_bytes(cfg)))
    budget.check_budget(cfg)
    monkeypatch.setenv("HIERPOLY_MEMORY_BYTES", str(2 * (budget.memory_bytes(cfg) - 3 * budget.checkpoint_bytes(cfg))))
    with pytest.raises(budget.BudgetError, match="memory"):  # fits only when the checkpoint's copies are left out
        budget.check_budget(cfg)
    monkeypatch.setenv("HIERPOLY_MEMORY_BYTES", str(2 * budget.memory_bytes(cfg)))
    monkeypatch.setattr("shutil.disk_usage", lambda _: type("Usage", (), {"free": budget.disk_bytes(cfg) // 2})())
    with pytest.raises(budget.BudgetError, match="saves checkpoints"):
        budget.check_budget(cfg, tmp_path)


# ------------------------------------------------------- real processes
def _saved_step(directory: Path, cfg: RunConfig) -> int:
    try:
        saved = checkpoints.load(directory, cfg.key())
    except StoreError:
        return 0
    return 0 if saved is None else max(saved[1]["steps"])


@pytest.fixture
def quick_saves(monkeypatch):
    monkeypatch.setenv("HIERPOLY_CHECKPOINT_S", "0")
    monkeypatch.setenv("HIERPOLY_WORKER_IDLE_S", "2")
    yield
    for pid in [j.pid for j in records.list_jobs() if j.status in records.LIVE and j.pid] + doctor_queries.idle_worker_pids():
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _reference(tmp_path) -> dict:
    """LONG trained without a stop, in this process, into a store of its own."""
    ended = runner.execute(LONG, results=Store(tmp_path / "reference"))
    return {"metrics": ended.result.metrics, "block": ended.result.first_block, "history": ended.result.history}


def _assert_same_result(stored, reference: dict) -> None:
    assert stored.metrics == reference["metrics"]
    for name, value in reference["block"].items():
        np.testing.assert_array_equal(stored.first_block[name], value)
    for column in ("step", "train_loss", "test_loss", "feature_corr"):  # rows fall where chunks (timed) end: the last
        assert stored.history[column][-1] == reference["history"][column][-1]


@pytest.mark.process
def test_kill_9_mid_run_then_the_resubmitted_job_resumes_to_the_same_result(cache_dir, quick_saves, tmp_path):
    store = Store(cache_dir)
    job_id = scheduler.submit(LONG, store)
    wait_for(lambda: _saved_step(cache_dir, LONG) > 0, 180)
    job = records.get(job_id, store)
    os.kill(job.pid, signal.SIGKILL)
    wait_for(lambda: records.get(job_id, store).finished, 30)
    killed_at = _saved_step(cache_dir, LONG)
    assert 0 < killed_at < LONG.steps and not store.has(LONG.key())
    again = scheduler.submit(LONG, store)
    done = scheduler.wait(again, timeout=300, store=store)
    assert done.status == "done", done.message
    assert [r.label for r in done.progress if r.phase == "resumed"] == [f"resumed from step {killed_at}"]
    stored = store.get(LONG.key())
    assert stored.meta["extra"]["checkpoints"]["resumed_from"] == killed_at
    assert not checkpoints.path(cache_dir, LONG.key()).exists()  # gone once the result is stored
    _assert_same_result(stored, _reference(tmp_path))


@pytest.mark.process
def test_a_cancelled_job_submitted_again_resumes(cache_dir, quick_saves):
    store = Store(cache_dir)
    job_id = scheduler.submit(LONG, store)
    wait_for(lambda: _saved_step(cache_dir, LONG) > 0, 180)
    assert scheduler.cancel(job_id, store)
    assert scheduler.wait(job_id, timeout=60, store=store).status == "cancelled"
    stopped_at = _saved_step(cache_dir, LONG)  # a cancel saves where the run stopped
    assert 0 < stopped_at < LONG.steps
    listed = [f for f in doctor.check(cache_dir) if f.what == "checkpoint"]
    assert len(listed) == 1 and "running its config again resumes it" in listed[0].problem
    done = scheduler.wait(scheduler.submit(LONG, store), timeout=300, store=store)
    assert done.status == "done", done.message
    assert [r.label for r in done.progress if r.phase == "resumed"] == [f"resumed from step {stopped_at}"]
    assert store.get(LONG.key()).meta["steps"] == LONG.steps and not checkpoints.listing(cache_dir)
    meta = store.get(LONG.key()).meta  # its seconds count the part trained before the cancel too
    assert 0 < meta["extra"]["checkpoints"]["seconds_before"] < meta["seconds"]


@pytest.mark.process
def test_an_inline_sweep_stopped_by_sigterm_resumes_when_rerun(cache_dir, quick_saves, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO), HIERPOLY_CACHE_DIR=str(cache_dir))
    grid = ["sweep", "--d", "3", "--n", "64", "--seeds", "1", "--steps", str(LONG.steps), "--m2", "20",
            "--n-test", "32", "--n-eval", "64", "--no-baselines", "--executor", "inline", "--json"]
    proc = subprocess.Popen([sys.executable, "-m", "hierpoly", *grid], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        saved = wait_for(lambda: [s for s in checkpoints.listing(cache_dir) if s.doc and max(s.doc["steps"]) > 0]
                          or proc.poll() is not None, 180)
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == -signal.SIGTERM and len(saved) == 1
    key = saved[0].name
    stopped_at = max(checkpoints.load(cache_dir, key)[1]["steps"])
    assert 0 < stopped_at < LONG.steps and not Store(cache_dir).has(key)
    again = subprocess.run([sys.executable, "-m", "hierpoly", *grid], cwd=REPO, env=env, capture_output=True,
                           text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"resumed from step {stopped_at}" in again.stderr
    assert json.loads(again.stdout)["cells"][0]["status"] == "done"
    assert Store(cache_dir).get(key).meta["extra"]["checkpoints"]["resumed_from"] == stopped_at
