"""Seeds trained together (one vmapped program) give what each seed gives alone."""
import dataclasses

import numpy as np
import pytest

from hierpoly.config import RunConfig
from hierpoly.engine import train
from hierpoly.progress import Progress

# tol/patience chosen so the three seeds stop at different steps (plateau or cap)
BASE = RunConfig(d=4, n=256, m2=50, steps=400, lr=3e-3, patience=50, tol=0.3, lr_drops=1, feature_tol=0.0, n_test=64)
CHUNK = 50
# One program per seed or one for all: the same arithmetic, reduced in another order. Measured on this 2-core
# CPU: losses and history within 5e-7 relative, parameters within 3e-6; the bounds below leave 40-300x for
# another CPU's float noise, and still fail on any real difference in the training.
LOSS_RTOL, PARAM_RTOL, PARAM_ATOL = 1e-4, 1e-3, 1e-4


def corr_bound(g: np.ndarray) -> float:
    """How far corr(g, p) may move when the parameters move within PARAM_RTOL: a bound, not a measured noise.

    g = (1/m1) Σ u (v·x + s)³ moves by at most (1 + 3)·PARAM_RTOL relative when u, v, s each do (to first
    order), and Pearson's correlation with a fixed p moves by at most 2‖Δg‖/‖g − ḡ‖ (Cauchy–Schwarz on the
    standardised vectors); ‖g‖/‖g − ḡ‖ is read from the run's own stored g (a ratio, not a noise).
    """
    return 2 * 4 * PARAM_RTOL * float(np.linalg.norm(g) / np.linalg.norm(g - g.mean()))


@pytest.fixture(scope="module")
def both():
    cfgs = [dataclasses.replace(BASE, seed=s) for s in range(3)]
    rows: list[tuple[int, Progress]] = []
    batched = train.run_seeds(cfgs, on_progress=lambda i, row: rows.append((i, row)) if row.is_history else None, chunk=CHUNK)
    alone = [train.run(c, chunk=CHUNK) for c in cfgs]
    return cfgs, batched, alone, rows


@pytest.mark.slow
def test_each_seed_matches_its_own_run(both):
    cfgs, batched, alone, _ = both
    assert len({r.steps for r in alone}) > 1, "the config should make seeds stop at different steps"
    for cfg, b, a in zip(cfgs, batched, alone):
        assert (b.status, b.steps, b.message) == (a.status, a.steps, a.message), f"seed {cfg.seed}"
        assert b.extra["stopped_by"] == a.extra["stopped_by"]
        assert b.extra["batched_seeds"] == 3
        for name in ("train_loss", "test_loss"):
            assert b.metrics[name] == pytest.approx(a.metrics[name], rel=LOSS_RTOL), f"seed {cfg.seed} {name}"
        bound = corr_bound(np.asarray(a.samples["g"], float))
        assert b.metrics["feature_corr"] == pytest.approx(a.metrics["feature_corr"], abs=bound), f"seed {cfg.seed}"
        # a seed that stopped early is frozen at its stop: same parameters as its own run
        for name in a.params:
            np.testing.assert_allclose(b.params[name], a.params[name], rtol=PARAM_RTOL, atol=PARAM_ATOL,
                                       err_msg=f"seed {cfg.seed} {name}")


@pytest.mark.slow
def test_histories_and_progress_rows_are_per_seed(both):
    _, batched, alone, rows = both
    for i, (b, a) in enumerate(zip(batched, alone)):
        assert [r.step for r in b.history] == [r.step for r in a.history]
        assert [r.step for j, r in rows if j == i] == [r.step for r in b.history]
        np.testing.assert_allclose([r.train_loss for r in b.history], [r.train_loss for r in a.history], rtol=LOSS_RTOL)


def test_batchable_only_for_joint_three_layer_configs_differing_in_seed():
    cfgs = [dataclasses.replace(BASE, seed=s) for s in range(2)]
    assert train.seeds_batchable(cfgs)
    assert not train.seeds_batchable(cfgs[:1])
    assert not train.seeds_batchable([cfgs[0], dataclasses.replace(cfgs[1], n=128)])
    assert not train.seeds_batchable([dataclasses.replace(c, mode="layerwise") for c in cfgs])


@pytest.mark.slow
def test_unbatchable_configs_run_one_after_another():
    cfgs = [RunConfig(d=3, n=64, m2=20, steps=20, mode="layerwise", n_test=32, seed=s) for s in range(2)]
    rows = []
    results = train.run_seeds(cfgs, on_progress=lambda i, row: rows.append(i), chunk=10)
    for cfg, r in zip(cfgs, results):
        alone = train.run(cfg, chunk=10)
        assert r.status == alone.status == "done"
        assert r.metrics == pytest.approx(alone.metrics)
    assert sorted(set(rows)) == [0, 1]


@pytest.mark.slow
def test_on_a_cpu_a_cells_seeds_run_one_after_another_each_outcome_as_it_ends():
    from hierpoly.jobs import runner

    cfgs = [dataclasses.replace(BASE, seed=s, steps=120) for s in range(2)]
    assert train.seeds_batchable(cfgs) and not train.seeds_batch_pays(cfgs)  # these tests run on a CPU
    seen: list[int] = []
    outcomes = runner.execute_seeds(cfgs, on_progress=lambda i, row: seen.append(i))
    first = next(outcomes)
    assert set(seen) == {0}  # seed 1 has not started when seed 0's outcome arrives
    second = next(outcomes)
    for ended, cfg in zip((first, second), cfgs):
        alone = runner.execute(cfg).result
        assert ended.result.metrics == alone.metrics and ended.result.meta["steps"] == alone.meta["steps"]
        assert "batched_seeds" not in ended.result.meta["extra"]
