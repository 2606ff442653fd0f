"""Training: ridge agreement of Algorithm 1, joint learning, divergence, cancellation."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hierpoly.config import RunConfig
from hierpoly.engine import model, train

TINY = dict(d=4, n=512, m2=50, n_test=512)


def test_ridge_gd_converges_to_the_closed_form():
    phi = jax.random.normal(jax.random.PRNGKey(0), (300, 20)) * jnp.linspace(0.3, 1.0, 20)
    y = jax.random.normal(jax.random.PRNGKey(1), (300,))
    xi = 0.05
    hyper = {"lr": train.largest_stable_lr(phi, xi), "xi": xi}
    w, losses = jax.lax.scan(lambda w, _: train.ridge_step(w, (phi, y), hyper), jnp.zeros(20), None, length=3000)
    np.testing.assert_allclose(w, train.ridge_solution(phi, y, xi), rtol=1e-4, atol=1e-5)
    assert np.all(np.diff(np.asarray(losses)) <= 1e-6)  # GD on a convex quadratic at 1/L: monotone


def test_layerwise_stages_reach_their_ridge_solutions():
    cfg = RunConfig(d=3, n=2000, m1=20, m2=30, mode="layerwise", steps=20000, weight_decay=1e-2, n_test=256)
    result = train.run(cfg, chunk=5000)
    assert result.status == "done"
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
    c_star = train.ridge_solution(psi2, data.y_train[half:] - g2, cfg.weight_decay)
    np.testing.assert_allclose(result.params["c"], c_star, rtol=5e-3, atol=5e-3 * float(jnp.abs(c_star).max()))


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
