"""The one training loop: chunking never changes results, progress phases, no recompiles, snapshots."""
import dataclasses
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from hierpoly.config import RunConfig
from hierpoly.engine import baselines, evaluation, loop, model, train
from hierpoly.jobs import runner
from hierpoly.results import bundles, codec
from hierpoly.results.store import Store

REPO = Path(__file__).resolve().parent.parent
# plateau at a window end before the cap, so the rule is exercised
PLATEAU = RunConfig(d=4, n=256, m2=30, steps=1000, lr=3e-3, tol=0.5, patience=100, n_test=300, n_eval=4096)


@pytest.mark.slow
def test_chunk_lengths_never_change_results():
    runs = [train.run(PLATEAU, chunk=c) for c in (7, 100, None)]
    assert runs[0].extra["stopped_by"] == "plateau" and runs[0].steps % loop.PLATEAU_WINDOW == 0
    for other in runs[1:]:
        assert (other.status, other.steps, other.message) == (runs[0].status, runs[0].steps, runs[0].message)
        assert other.metrics == runs[0].metrics
        for name in runs[0].params:
            np.testing.assert_array_equal(other.params[name], runs[0].params[name])
    assert [r.step for r in runs[0].history][:3] == [0, 7, 14]


def test_the_rules_step_by_step():
    rule = loop.rules(cap=300, tol=0.5, patience=100)
    clock = loop.start_clock()
    statuses = []
    for loss in [1.0] * 100 + [0.4] * 100 + [0.3] * 100:  # window 2 improves by 60 %, window 3 by 25 % < tol
        clock, keep = loop.advance(clock, rule, np.float32(loss), np.bool_(True))
        statuses.append(int(clock.status))
    assert statuses.index(loop.PLATEAU) == 299 and int(clock.best_at) == 200
    clock, keep = loop.advance(loop.start_clock(), rule, np.float32(np.nan), np.bool_(True))
    assert (int(clock.status), int(clock.step), bool(keep)) == (loop.DIVERGED, 0, False)
    clock, keep = loop.advance(loop.start_clock(), rule, np.float32(1.0), np.bool_(False))  # the step made θ non-finite
    assert (int(clock.status), int(clock.step), bool(keep)) == (loop.DIVERGED, 1, False)


def test_the_plateau_rule_lowers_the_rate_before_it_stops():
    rule = loop.rules(cap=1000, tol=0.5, patience=100, drops=2, decay=0.1)
    clock, events = loop.start_clock(), []
    for step in range(1000):
        before = int(clock.drops)
        clock, _ = loop.advance(clock, rule, np.float32(1.0), np.bool_(True))  # never improves after window 1
        if int(clock.drops) != before or int(clock.status) != loop.RUNNING:
            events.append((step + 1, int(clock.drops), int(clock.status)))
        if int(clock.status) != loop.RUNNING:
            break
    # fires at 200 (drop 1), waits `patience` again: 300 (drop 2), then 400 stops on the rule
    assert events == [(200, 1, loop.RUNNING), (300, 2, loop.RUNNING), (400, 2, loop.PLATEAU)]
    hyper = {"lr": np.float32(0.5), "xi": np.float32(1.0)}
    assert float(loop.scaled(hyper, clock, rule)["lr"]) == pytest.approx(0.5 * 0.01)
    assert float(loop.scaled(hyper, clock, rule)["xi"]) == 1.0 and loop.scaled({"xi": 1.0}, clock, rule) == {"xi": 1.0}


def test_the_holdout_rule_keeps_the_lowest_and_stops_patience_steps_after_it():
    rule = loop.rules(cap=10_000, patience=300)
    clock, scored = loop.start_clock()._replace(val_best=np.float32(1.0)), []  # step 0 scored 1.0
    while int(clock.status) == loop.RUNNING:
        done = int(clock.step) + 1
        held = np.float32(0.5 + abs(done - 40) / 100)  # lowest at step 40, not a check step: 32 and 64 are
        if bool(loop.holdout_check_due(clock)):
            scored.append(done)
        clock, _ = loop.advance(clock, rule, np.float32(1 / done), np.bool_(True), holdout=held)  # train loss falls
    assert scored[:8] == [1, 2, 4, 8, 16, 32, 64, 100] and 128 in scored and 256 in scored
    assert (int(clock.val_at), float(clock.val_best)) == (32, pytest.approx(0.58))
    assert (int(clock.status), int(clock.step)) == (loop.HOLDOUT, 400)  # the first check ≥ 32 + 300
    clock, _ = loop.advance(loop.start_clock(), rule, np.float32(1.0), np.bool_(True))  # no holdout: no rule
    assert float(clock.val_best) == np.inf and int(clock.status) == loop.RUNNING


def test_a_drop_continues_the_run_where_the_rule_would_have_stopped_it():
    cfg = dataclasses.replace(PLATEAU, steps=600, lr_drops=1, lr_decay=0.25)
    dropped = train.run(cfg, chunk=10)
    assert dropped.extra["lr_drops"] == 1 and dropped.extra["stopped_by"] == "plateau"
    assert "after 1 learning-rate drop" in dropped.message
    no_drops = train.run(dataclasses.replace(cfg, lr_drops=0), chunk=10)
    assert no_drops.steps < dropped.steps  # the first firing stopped it
    rows = len(no_drops.history)  # identical up to the drop: the same steps at the same rate
    assert [r.train_loss for r in no_drops.history] == [r.train_loss for r in dropped.history][:rows]
    after = np.diff([r.train_loss for r in dropped.history][rows - 1:])
    assert np.all(np.isfinite(after)) and len(after) > 0


def test_progress_phases_and_feature_samples():
    cfg = dataclasses.replace(PLATEAU, steps=40, n_test=300)
    rows = []
    result = train.run(cfg, on_progress=rows.append)
    phases = [r.phase for r in rows]
    assert phases[0] == "starting" and phases[1] == "training" and phases[2] == "compiling"
    assert phases[-1] == "evaluating" and set(phases[3:]) == {"training", "evaluating"}
    fractions = [r.fraction for r in rows if r.phase == "evaluating"]
    assert fractions[0] == 0.0 and fractions[-1] == 1.0 and fractions == sorted(fractions)
    history = [r for r in rows if r.is_history]
    assert history == result.history and len(history) == 41  # 40 steps under MIN_ROWS rows: one row a step
    assert all(len(r.feature_sample) == evaluation.SNAPSHOT_POINTS for r in history)
    # the starting row carries p on the very points whose g the history rows carry
    p_test = np.asarray(train.make_data(cfg).p_test[: evaluation.SNAPSHOT_POINTS])
    np.testing.assert_allclose(rows[0].feature_sample, p_test, rtol=1e-6)
    np.testing.assert_allclose(result.samples["p"][: evaluation.SNAPSHOT_POINTS], p_test, rtol=1e-6)
    assert np.all(np.asarray(history[0].feature_sample) == 0.0)  # u = 0 at init
    # the last row's feature is the trained network's g on the first monitor points (the samples' g)
    np.testing.assert_array_equal(np.float32(history[-1].feature_sample), result.samples["g"][: evaluation.SNAPSHOT_POINTS])


@pytest.fixture
def compilations():
    """The names of programs XLA compiles while the fixture is active."""
    names: list[str] = []

    class Catch(logging.Handler):
        def emit(self, record):
            if record.getMessage().startswith("Finished XLA compilation"):
                names.append(record.getMessage())

    handler, logger = Catch(), logging.getLogger("jax")
    logger.addHandler(handler)
    with jax.log_compiles(True):
        yield names
    logger.removeHandler(handler)


@pytest.mark.slow
def test_a_second_run_compiles_nothing(compilations):
    tiny = RunConfig(d=4, n=256, m2=30, steps=60, n_test=64, n_eval=2000)
    other = dict(seed=3, lr=0.02, steps=90, tol=0.01, patience=300)  # another λ, init, data, rate, cap and rule
    for arch in ("three_layer", "two_layer"):
        first = dataclasses.replace(tiny, arch=arch)
        runner.execute(first)
        compilations.clear()
        again = runner.execute(dataclasses.replace(first, **other))
        assert again.status == "done" and compilations == [], arch
    seeds = [dataclasses.replace(tiny, seed=s) for s in (0, 1)]
    list(runner.execute_seeds(seeds))
    compilations.clear()
    list(runner.execute_seeds([dataclasses.replace(c, seed=c.seed + 5, lr=0.03) for c in seeds]))
    assert compilations == []


def test_snapshots_are_thinned_stored_and_optional(tmp_path):
    out = runner.execute(dataclasses.replace(PLATEAU, steps=300, tol=0.0))
    snaps = out.result.snapshots
    assert snaps["g"].shape == (runner.SNAPSHOT_ROWS, evaluation.SNAPSHOT_POINTS) and snaps["g"].dtype == np.float32
    assert snaps["step"][0] == 0 and snaps["step"][-1] == 300 and np.all(np.diff(snaps["step"]) > 0)
    back = codec.from_bytes(codec.to_bytes(out.result))
    for name in ("step", "g"):
        np.testing.assert_array_equal(back.snapshots[name], snaps[name])
    old = dataclasses.replace(out.result, snapshots={})  # results stored before snapshots existed
    assert "snapshots.npz" not in codec.encode(old) and codec.from_bytes(codec.to_bytes(old)).snapshots == {}
    store = Store(tmp_path / "store")
    other = dataclasses.replace(old, config=dataclasses.replace(old.config, seed=9))
    store.put(out.result)
    store.put(other)
    got = bundles.read_bundle(bundles.export_bundle(store, [out.result.key, other.key]))
    assert got[out.result.key].snapshots["g"].shape == snaps["g"].shape and got[other.key].snapshots == {}
    with pytest.raises(codec.StoreError, match="snapshots.g"):
        codec.check(dataclasses.replace(out.result, snapshots={**snaps, "g": snaps["g"].astype(np.float64)}))
    with pytest.raises(codec.StoreError, match="more than"):
        codec.check(dataclasses.replace(out.result, snapshots={"step": np.arange(200), "g": np.zeros((200, 4), np.float32)}))


def test_kernel_rows_carry_its_output_as_the_feature():
    rows = []
    res = baselines.run(RunConfig(d=4, n=128, arch="kernel", n_test=64, n_eval=2000), on_progress=rows.append)
    assert [r.step for r in res.history] == [0, 1]
    np.testing.assert_allclose(res.history[-1].feature_sample, res.samples["g"][:64], rtol=1e-6)


@pytest.mark.process
def test_a_fresh_process_loads_compiled_programs_from_the_store(tmp_path):
    inherited = {name: value for name, value in os.environ.items() if name != "HIERPOLY_XLA_CACHE_DIR"}
    env = {**inherited, "PYTHONPATH": str(REPO), "HIERPOLY_CACHE_DIR": str(tmp_path / "store")}
    code = (
        "import json, sys; from hierpoly.config import RunConfig; from hierpoly.jobs import runner;"
        "out = runner.execute(RunConfig(d=3, n=64, m2=20, steps=20, n_test=32, n_eval=64, seed=int(sys.argv[1])));"
        "print(json.dumps(out.result.metrics))"
    )
    first = subprocess.run([sys.executable, "-c", code, "0"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr
    cached = sorted((tmp_path / "store" / "xla").iterdir())
    assert len(cached) >= 5  # the chunk, the scores, the evaluation, ...
    env["JAX_LOG_COMPILES"] = "1"
    second = subprocess.run([sys.executable, "-c", code, "1"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr
    assert "Persistent compilation cache hit" in second.stderr
    # the programs read back compute what freshly compiled ones do: seed 1 trained again in this process
    from hierpoly.config import RunConfig
    from hierpoly.jobs import runner

    fresh = runner.execute(RunConfig(d=3, n=64, m2=20, steps=20, n_test=32, n_eval=64, seed=1)).result.metrics
    loaded = json.loads(second.stdout.splitlines()[-1])
    assert {k: loaded[k] for k in ("feature_corr", "test_loss", "train_loss")} == pytest.approx(
        {k: fresh[k] for k in ("feature_corr", "test_loss", "train_loss")}, rel=1e-6)
    # HIERPOLY_XLA_CACHE_DIR: one folder of compiled programs for another store too
    env.update(HIERPOLY_CACHE_DIR=str(tmp_path / "other"), HIERPOLY_XLA_CACHE_DIR=str(tmp_path / "shared"))
    third = subprocess.run([sys.executable, "-c", code, "2"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert third.returncode == 0, third.stderr
    assert len(list((tmp_path / "shared").iterdir())) >= 5 and not (tmp_path / "other" / "xla").exists()


def test_chunks_grow_to_about_a_second_in_powers_of_two():
    sizes = loop.ChunkSizes(cap=100_000)  # at most 100000 / MIN_ROWS steps a chunk: 2048 as a power of two
    assert sizes.next() == 1
    sizes.observe(1, 30.0)  # the first chunk compiles: its time says nothing about a step
    assert sizes.next() == 1
    sizes.observe(1, 0.001)  # 1 ms a step: ~1000 steps a second, but growing at most 4x a chunk
    assert sizes.next() == 4
    for _ in range(10):
        sizes.observe(sizes.next(), sizes.next() * 0.001)
    assert sizes.next() == 512  # the power of two under one second's worth
    sizes.observe(512, 5.0)  # the machine got slower: back under a second at once
    assert sizes.next() == 64
    fast = loop.ChunkSizes(cap=1000)
    for _ in range(12):
        fast.observe(fast.next(), 1e-6)
    assert fast.next() == 16  # 1000 steps: at least MIN_ROWS = 50 rows
    assert loop.ChunkSizes(cap=10, fixed=3).next() == 3
    with pytest.raises(ValueError, match="at least 1"):
        loop.ChunkSizes(cap=10, fixed=0)


def test_the_feature_rule_stops_when_g_on_the_first_training_inputs_settles():
    cfg = dataclasses.replace(PLATEAU, steps=3000, tol=0.0, patience=100, lr_drops=0, feature_tol=0.08)
    settled = train.run(cfg, chunk=50)
    assert settled.extra["stopped_by"] == "feature settled" and settled.steps % 100 == 0 < settled.steps < 3000
    assert settled.message.startswith("converged: the learned feature settled")
    data = train.make_data(cfg)
    probe = data.x_train[: loop.PROBE_POINTS]

    def g_at(step):  # the same run without the rule, stopped by the cap at `step`
        out = train.run(dataclasses.replace(cfg, steps=step, feature_tol=0.0), chunk=50)
        return np.asarray(model.feature({k: jax.numpy.asarray(v) for k, v in out.params.items()}, probe, cfg.sigma1))

    def moved(a, b):
        return np.linalg.norm(b - a) / np.linalg.norm(b)

    s = settled.steps
    np.testing.assert_allclose(g_at(s), model.feature({k: jax.numpy.asarray(v) for k, v in settled.params.items()},
                                                      probe, cfg.sigma1), rtol=1e-5, atol=1e-6)
    assert moved(g_at(s - 100), g_at(s)) < 0.08 <= moved(g_at(s - 200), g_at(s - 100))
