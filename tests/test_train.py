"""Training: ridge agreement of Algorithm 1, joint learning, divergence, cancellation."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hierpoly.config import RunConfig
from hierpoly.engine import model, train

TINY = dict(d=4, n=512, m2=50, n_test=512)


@pytest.mark.slow
def test_ridge_gd_converges_to_the_closed_form():
    phi = jax.random.normal(jax.random.PRNGKey(0), (300, 20)) * jnp.linspace(0.3, 1.0, 20)
    y = jax.random.normal(jax.random.PRNGKey(1), (300,))
    xi = 0.05
    hyper = {"lr": train.largest_stable_lr(phi, xi), "xi": xi}
    w, losses = jax.lax.scan(lambda w, _: train.ridge_step(w, (phi, y), hyper), jnp.zeros(20), None, length=3000)
    np.testing.assert_allclose(w, train.ridge_solution(phi, y, xi), rtol=1e-4, atol=1e-5)
    assert np.all(np.diff(np.asarray(losses)) <= 1e-6)  # GD on a convex quadratic at 1/L: monotone


@pytest.mark.slow
def test_layerwise_stages_reach_their_ridge_solutions():
    # each stage with its own ξ and T: stage 2 runs T2 = 12000 steps at ξ2 = 10 ξ1
    cfg = RunConfig(d=3, n=2000, m1=20, m2=30, mode="layerwise", steps=20000, weight_decay=1e-2, steps2=12000,
                    weight_decay2=1e-1, n_test=256)
    rows = []
    result = train.run(cfg, chunk=4000, on_progress=lambda row: rows.append(row) if row.is_history else None)
    assert result.status == "done" and result.message == "ran T1 = 20000, T2 = 12000 steps"
    assert result.steps == rows[-1].step == 32000 and [r.step for r in rows][-4:] == [20000, 24000, 28000, 32000]
    assert {k: result.extra[k] for k in ("xi1", "xi2", "T1", "T2")} == {"xi1": 1e-2, "xi2": 1e-1, "T1": 20000,
                                                                       "T2": 12000}
    data = train.make_data(cfg)
    params0 = model.init(train.keys(cfg.seed)["init"], cfg)
    half = cfg.n // 2
    phi1 = model.first_features(params0, data.x_train[:half], cfg.sigma1) / cfg.m1
    u_star = train.ridge_solution(phi1, data.y_train[:half], cfg.weight_decay)
    np.testing.assert_allclose(result.params["u"], u_star, rtol=2e-3, atol=2e-3 * float(jnp.abs(u_star).max()))
    # a, b, s, V never move in Algorithm 1
    for name in ("a", "b", "s", "V"):
        np.testing.assert_array_equal(result.params[name], params0[name])
    params1 = {**params0, "u": jnp.asarray(result.params["u"])}
    g2 = model.feature(params1, data.x_train[half:], cfg.sigma1)
    psi2 = jax.nn.relu(g2[:, None] * params0["a"] + params0["b"]) / cfg.m2
    c_star = train.ridge_solution(psi2, data.y_train[half:] - g2, cfg.weight_decay2)
    np.testing.assert_allclose(result.params["c"], c_star, rtol=5e-3, atol=5e-3 * float(jnp.abs(c_star).max()))
    # and not ξ1's solution: the two differ far beyond the tolerance above
    c_xi1 = train.ridge_solution(psi2, data.y_train[half:] - g2, cfg.weight_decay)
    assert float(jnp.abs(result.params["c"] - c_xi1).max()) > 0.1 * float(jnp.abs(c_xi1).max())


LAYERWISE = dict(d=4, n=512, m2=50, n_test=256, n_eval=4096, mode="layerwise")


@pytest.mark.slow
def test_layerwise_stage2_steps_at_its_own_rate():
    """η2 given is used: stage 2's c equals T2 plain GD steps at η2 from c = 0 (float64 reference)."""
    cfg = RunConfig(**LAYERWISE, steps=200, steps2=7, lr2=3.0, weight_decay2=1e-3)
    result = train.run(cfg)
    assert result.status == "done" and result.steps == 207
    data, params0 = train.make_data(cfg), model.init(train.keys(cfg.seed)["init"], cfg)
    half = cfg.n // 2
    phi1 = model.first_features(params0, data.x_train[:half], cfg.sigma1) / cfg.m1
    assert result.extra["lr1"] == pytest.approx(train.largest_stable_lr(phi1, cfg.weight_decay))  # η1: 1/L
    assert result.extra["lr2"] == 3.0 != pytest.approx(result.extra["lr1"])
    params1 = {**params0, "u": jnp.asarray(result.params["u"])}
    g2 = model.feature(params1, data.x_train[half:], cfg.sigma1)
    psi = np.asarray(jax.nn.relu(g2[:, None] * params0["a"] + params0["b"]) / cfg.m2, np.float64)
    target = np.asarray(data.y_train[half:] - g2, np.float64)
    c = np.zeros(cfg.m2)
    for _ in range(cfg.steps2):
        c = c - 3.0 * (2.0 * psi.T @ (psi @ c - target) / len(target) + 1e-3 * c)
    np.testing.assert_allclose(result.params["c"], c, rtol=1e-3, atol=1e-4 * np.abs(c).max())
    at_one_over_l = train.run(dataclasses.replace(cfg, lr2=None))  # a different rate gives a different c
    assert np.abs(at_one_over_l.params["c"] - c).max() > 0.01 * np.abs(c).max()


@pytest.mark.slow
def test_layerwise_too_large_stage2_rate_diverges_in_stage_2():
    cfg = RunConfig(**LAYERWISE, steps=100, steps2=400, lr2=1e4)
    result = train.run(cfg, chunk=50)
    assert result.status == "diverged" and result.message.startswith("stage 2 loss became non-finite")
    assert 100 <= result.steps < 500  # stage 1 at its own 1/L ran all T1 = 100 steps
    assert result.extra["lr2"] == 1e4 and result.extra["lr1"] < 1e3
    assert result.metrics == {}
    assert train.run(dataclasses.replace(cfg, lr2=None), chunk=50).status == "done"


@pytest.mark.slow
def test_joint_training_learns_the_feature():
    cfg = RunConfig(d=4, n=2048, m2=100, steps=800, lr=0.01, n_test=1024)
    rows = []
    result = train.run(cfg, on_progress=lambda row: rows.append(row) if row.is_history else None, chunk=100)
    assert result.status == "done"
    assert result.metrics["feature_corr"] > 0.9
    assert rows[-1].test_loss < 0.1  # on the 1024 monitor points
    # over 2^20 points the heavy tail shows: inputs beyond the training data, where the
    # network is linear in g and h cubic, carry most of the loss (metrics.py)
    assert rows[-1].test_loss < result.metrics["test_loss"] < 0.75
    assert [r.step for r in rows] == list(range(0, 801, 100))
    assert rows[0].feature_corr == 0.0  # u = 0 at init: no feature yet
    assert set(result.samples) == {"p", "g", "h", "h_pred"}
    assert result.samples["p"].shape == (1024,) and result.samples["g"].dtype == np.float32


@pytest.mark.slow
def test_same_seed_same_run_and_test_set_independent_of_n():
    cfg = RunConfig(**TINY, steps=50)
    a, b = train.run(cfg), train.run(cfg)
    assert a.metrics == b.metrics
    d1, d2 = train.make_data(cfg), train.make_data(dataclasses.replace(cfg, n=1000))
    np.testing.assert_array_equal(d1.x_test, d2.x_test)
    np.testing.assert_array_equal(d1.lam, d2.lam)


def test_absurd_learning_rate_diverges_with_the_step():
    result = train.run(RunConfig(**TINY, lr=1e4, steps=400), chunk=50)
    assert result.status == "diverged"
    assert "non-finite at step" in result.message
    assert 0 <= result.steps < 400
    assert result.metrics == {} and result.samples == {}


def test_cancellation_between_chunks():
    calls = []
    result = train.run(RunConfig(**TINY, steps=1000), chunk=50, should_stop=lambda: len(calls) >= 2,
                       on_progress=lambda row: calls.append(row) if row.is_history else None)
    assert result.status == "cancelled"
    assert result.steps == 50  # the hook is checked before each chunk: init row, one chunk, then stop
    assert result.metrics == {}


def test_plateau_rule_stops_early():
    cfg = RunConfig(**TINY, steps=5000, tol=0.5, patience=100)
    result = train.run(cfg, chunk=50)
    assert result.status == "done" and result.steps < 5000
    assert result.extra["stopped_by"] == "plateau"
