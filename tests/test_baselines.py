"""The kernel and two-layer baselines: same data, sane metrics, and the kernel's degree-≤k floor."""
import dataclasses
import math

import jax
import numpy as np
import pytest

from hierpoly.config import RunConfig
from hierpoly.engine import baselines, evaluation, loop, model, train
from hierpoly.engine import data as engine_data
from hierpoly.jobs.runner import to_result
from hierpoly.results.codec import check


def test_kernel_floor_exact_values_and_monte_carlo():
    # ||P_{≤3} h||² = C² d [E[h3³h1]² + (E[h3⁴] + 3(d-1))²], E[h3⁴] = 93, E[h3³h1] = 22.045...
    coefs = baselines.low_degree_coefficients(4, 3)
    assert coefs[3] == pytest.approx(93 + 9) and coefs[1] == pytest.approx(54 / np.sqrt(6)) and coefs[0] == 0
    assert baselines.kernel_floor(4) == pytest.approx(0.8123061, abs=1e-6)
    assert baselines.kernel_floor(20) == pytest.approx(0.7307800, abs=1e-6)
    # Monte Carlo: the explicit projection has the exact energy (proj² is light-tailed; h is not,
    # so orthogonality of h - P h cannot be checked this way with any precision)
    cfg = RunConfig(d=4, n=64)
    data = engine_data.make_data(cfg)
    x = jax.random.normal(jax.random.PRNGKey(7), (200_000, 4))
    proj = np.asarray(baselines.best_low_degree(x, data.lam, 3, data.C), np.float64)
    assert np.mean(proj**2) == pytest.approx(1 - baselines.kernel_floor(4), rel=0.03)
    # k = 1: P_{≤1} p³ = 3d p exactly, energy 9 d³
    C1 = baselines.targets.normalisation(5, 1, (0, 0, 0, 1)).C
    assert baselines.kernel_floor(5, k=1) == pytest.approx(1 - C1**2 * 9 * 5**3)
    with pytest.raises(ValueError, match="cubic"):
        baselines.kernel_floor(4, link="linear")


def _eval_points(cfg, data):
    """The run's n_eval evaluation points (evaluation.py's chunks) and h on them, float64."""
    tgt, key = engine_data.target(cfg, data.lam), engine_data.keys(cfg.seed)["eval"]
    chunks = [engine_data.draw(jax.random.fold_in(key, i), rows, tgt) for i, rows in enumerate(evaluation._chunk_rows(cfg.n_eval))]
    return np.concatenate([c[0] for c in chunks]), np.concatenate([np.asarray(c[1], np.float64) for c in chunks])


def _plain_test_mse(res, y):
    """The run's final test MSE: plain once metrics carry test_loss_se, else undo the ratio to mean(h²)."""
    m = res.metrics
    return m["test_loss"] if "test_loss_se" in m else m["test_loss"] * float(np.mean(y**2))


@pytest.mark.slow
@pytest.mark.parametrize("d, n", [(4, 32768), pytest.param(6, 32768, marks=pytest.mark.slow)])
def test_kernel_reaches_the_exact_floor_at_large_n(d, n):
    """At n ≫ C(d+3, 3) the CV ridge on spanning features is the best cubic P_{≤3} h up to a small excess.

    Over the n_eval points the MSE's own standard error is large (h's tail: ≈ 0.16 at d = 4), so the
    comparison is paired: the kernel's squared error minus P h's on the same points averages to the
    excess ||f − P h||² (f − P h is a cubic, ⟂ h − P h) within 3 paired standard errors — never below
    P h's (the floor) by more — while P h's own MSE there estimates kernel_floor(d).
    """
    cfg = RunConfig(d=d, n=n, arch="kernel")
    res = baselines.run(cfg)
    assert res.status == "done" and res.extra["width"] == math.comb(d + 3, 3) and not res.extra["ridge_at_edge"]
    data = engine_data.make_data(cfg)
    x, y = _eval_points(cfg, data)
    f = np.asarray(model.feature({k: jax.numpy.asarray(v) for k, v in res.params.items()}, x, cfg.sigma1), np.float64)
    proj = np.asarray(baselines.best_low_degree(x, data.lam, 3, data.C), np.float64)
    err2, floor2 = (f - y) ** 2, (proj - y) ** 2
    assert _plain_test_mse(res, y) == pytest.approx(float(np.mean(err2)), rel=1e-4)  # the run's evaluation points
    paired, se = float(np.mean(err2 - floor2)), float(np.std(err2 - floor2) / np.sqrt(y.size))
    excess = float(np.mean((f - proj) ** 2))
    assert excess < 0.04 and se < 0.01  # finite n costs little; the paired difference is light-tailed enough
    assert abs(paired - excess) <= 3 * se and paired >= -3 * se, (paired, excess, se)
    se_floor = float(np.std(floor2) / np.sqrt(y.size))
    assert abs(float(np.mean(floor2)) - baselines.kernel_floor(d)) <= 3 * se_floor
    assert res.history[0].test_loss == pytest.approx(1.0, rel=1e-5)  # the zero predictor
    assert [r.step for r in res.history] == [0, 1]
    check(to_result(cfg, res, res.seconds))  # storable as is


def _excess_per_penalty(cfg, data, params, folds):
    """||f_r − P_{≤3} h||² on fresh points for the refit at every relative penalty r of the grid."""
    G, b = sum(f.G for f in folds), sum(f.b for f in folds)
    W = baselines.ridge_fits(G, b, np.asarray(baselines.RIDGE_GRID) * baselines.ridge_scale(G))
    x = jax.random.normal(jax.random.PRNGKey(5), (100_000, cfg.d))
    proj = np.asarray(baselines.best_low_degree(x, data.lam, 3, data.C), np.float64)
    return np.mean((baselines._predict(params, W, x, cfg.sigma1) - proj[:, None]) ** 2, axis=0), float(np.mean(proj**2))


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kernel_cv_picks_an_interior_penalty_near_the_oracle_at_d8(seed):
    """d = 8, n = 8d³: the penalty is interior, and its fit is about as close to P_{≤3} h as the grid's best.

    The excess ||f − P h||² is light-tailed, so fresh points measure it well. Seeds 0 and 1 keep most of
    P h (no collapse to the zero predictor, whose excess is ||P h||²). Seed 2's training set holds one
    point with |h| ≈ 72 (most of its Σ h²): every penalty's fit is then about as far from P h as 0 is,
    so the best any penalty can do is near-zero — a fact of least squares under h's tail, not of the CV.
    """
    cfg = RunConfig(d=8, n=4096, arch="kernel", seed=seed, n_eval=2**14)
    res = baselines.run(cfg)
    assert res.status == "done" and not res.extra["ridge_at_edge"]
    data = engine_data.make_data(cfg)
    params = baselines._first_block(cfg, baselines.kernel_width(cfg))
    best, curve, folds, _ = baselines.choose_penalty(cfg, params, data)
    assert baselines.RIDGE_GRID[best] == res.extra["ridge_relative"] and 0 < best < len(baselines.RIDGE_GRID) - 1
    excess, energy = _excess_per_penalty(cfg, data, params, folds)
    assert excess[best] <= excess.min() + 0.15 * energy  # near the oracle penalty
    assert excess[best] <= 1.02 * energy  # never worse than the zero predictor
    if seed < 2:
        assert excess[best] < 0.5 * energy
    else:
        assert excess.min() > 0.8 * energy


def test_cv_picks_its_argmin_and_matches_a_slow_reference_per_fold():
    cfg = RunConfig(d=4, n=203, arch="kernel", n_eval=1024)  # folds of 40 or 41 rows
    data, params = engine_data.make_data(cfg), baselines._first_block(cfg, 35)
    bounds = baselines.fold_bounds(cfg.n)
    assert len(bounds) == 5 and bounds[0][0] == 0 and bounds[-1][1] == 203
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:])) and {b - a for a, b in bounds} <= {40, 41}
    curve = baselines.cv_curve(baselines.fold_moments(params, data.x_train, data.y_train, cfg.sigma1, bounds))
    phi = np.asarray(model.first_features(params, data.x_train, cfg.sigma1), np.float64)
    y = np.asarray(data.y_train, np.float64)
    for i, (start, stop) in enumerate(bounds):
        rest = np.r_[0:start, stop:cfg.n]
        G = phi[rest].T @ phi[rest]
        for j, r in enumerate(baselines.RIDGE_GRID[8:]):  # from 1e-8: the direct solve stays accurate
            w = np.linalg.solve(G + r * np.trace(G) / 35 * np.eye(35), phi[rest].T @ y[rest])
            ref = np.mean((phi[start:stop] @ w - y[start:stop]) ** 2)
            assert curve[i, 8 + j] == pytest.approx(ref, rel=1e-4), (i, r)  # the Gram form cancels a little
    res = baselines.run(cfg)
    losses = np.asarray(res.extra["cv_losses"])
    assert losses == pytest.approx(curve.mean(axis=0), rel=1e-9)
    assert res.extra["ridge_relative"] == baselines.RIDGE_GRID[int(np.argmin(losses))]
    assert res.extra["ridge_at_edge"] == (int(np.argmin(losses)) in (0, len(losses) - 1))
    assert len(baselines.RIDGE_GRID) == 33 and baselines.RIDGE_GRID[0] == 1e-12 and baselines.RIDGE_GRID[-1] == 1e4


def test_kernel_with_fewer_rows_than_folds_uses_leave_one_out():
    assert baselines.fold_bounds(3) == [(0, 1), (1, 2), (2, 3)]
    res = baselines.run(RunConfig(d=4, n=3, arch="kernel", n_eval=1024))
    assert res.status == "done" and "leave-one-out" in res.extra["cv"] and "leave-one-out" in res.message


def test_kernel_width_spans_degree_k():
    assert baselines.kernel_width(RunConfig(d=20, n=100)) == 1771  # C(23, 3) > d² = 400
    assert baselines.kernel_width(RunConfig(d=4, n=100, m1=50)) == 50


def test_two_layer_width_matches_the_networks_parameter_count():
    assert baselines.two_layer_width(RunConfig(d=20, n=100)) == 536  # (400·22 + 3000) / 22
    for cfg in (RunConfig(d=4, n=64, m2=50), RunConfig(d=20, n=100), RunConfig(d=7, n=64, m1=30, m2=11)):
        m, net = baselines.two_layer_width(cfg), model.init(jax.random.PRNGKey(0), cfg)
        three = sum(v.size for v in net.values())
        assert three == cfg.m1 * (cfg.d + 2) + 3 * cfg.m2 and abs(m * (cfg.d + 2) - three) <= (cfg.d + 2) / 2


@pytest.mark.slow
def test_two_layer_tunes_its_rate_trains_and_reports_like_the_network():
    cfg = RunConfig(d=4, n=512, arch="two_layer", steps=300, n_test=1024, m2=50)
    rows = []
    res = baselines.run(cfg, on_progress=rows.append, chunk=100)
    phases = [r.phase for r in rows]
    assert phases.index("tuning") < phases.index("training") and "tuning" not in phases[phases.index("training"):]
    tuning = [r.fraction for r in rows if r.phase == "tuning"]
    assert tuning[0] == 0.0 and tuning[-1] == 1.0 and tuning == sorted(tuning)
    width, extra = baselines.two_layer_width(cfg), res.extra
    assert set(res.params) == {"u", "s", "V"} and res.params["V"].shape == (width, 4) and extra["width"] == width
    best = int(np.argmin(extra["holdout_losses"]))
    assert extra["rates"] == pytest.approx([1e-3, 3e-3, 1e-2, 3e-2]) and extra["lr"] == extra["rates"][best]
    # 300 steps are too few for the holdout rule's patience of 1000: the trials hit the cap, so not converged
    assert extra["tuning_endings"] == ["step cap"] * 4 and extra["stopped_by"] == "step cap"
    assert res.status == "done" and res.steps == extra["holdout_steps"][best] > 0  # the holdout's step, on all n
    assert [r.step for r in rows if r.is_history] == [r.step for r in res.history] and res.history[-1].step == res.steps
    assert res.history[-1].train_loss < res.history[0].train_loss  # it learns
    assert -1 <= res.metrics["feature_corr"] <= 1
    assert np.isfinite(res.samples["h_pred"]).all() and res.samples["g"].shape == (1024,)
    check(to_result(cfg, res, res.seconds))
    again = baselines.run(cfg, chunk=7)  # deterministic, whatever the chunks
    assert again.metrics == res.metrics and again.extra == res.extra


@pytest.mark.slow
def test_the_holdout_picks_the_lowest_held_out_loss_and_its_step():
    """Each trial against a step-by-step reference: Adam on the first 80 % of the rows, the held-out MSE scored at
    step 0, 1, 2, 4, ..., 64 and every 100 steps; the trial ends `patience` steps after its lowest."""
    cfg = RunConfig(d=4, n=256, arch="two_layer", steps=4000, patience=300, tol=0.0, feature_tol=0.0, n_test=256, m2=30,
                    n_eval=4096)
    res = baselines.run(cfg)
    data = engine_data.make_data(dataclasses.replace(cfg, arch="three_layer"))
    fit = baselines.tuning_split(cfg.n)
    batch = (data.x_train[:fit], data.y_train[:fit], data.x_train[fit:], data.y_train[fit:])
    forward, step = model.Forward("relu"), jax.jit(baselines.two_layer_step, static_argnames="forward")
    for lr, loss, at, ending in zip(*(res.extra[k] for k in ("rates", "holdout_losses", "holdout_steps", "tuning_endings"))):
        state = loop.adam_state(baselines._first_block(cfg, baselines.two_layer_width(cfg)))
        lowest, lowest_at, t = float(baselines.holdout_loss(state, batch, forward)), 0, 0
        while t - lowest_at < cfg.patience or not (t % 100 == 0 or t & (t - 1) == 0):
            state, _ = step(state, batch, {"lr": np.float32(lr)}, forward)
            t += 1
            if t % 100 == 0 or t & (t - 1) == 0:
                held = float(baselines.holdout_loss(state, batch, forward))
                lowest, lowest_at = (held, t) if held < lowest else (lowest, lowest_at)
        assert ending == "holdout" and at == lowest_at and loss == pytest.approx(lowest, rel=1e-4), (lr, at, lowest_at)
    best = int(np.argmin(res.extra["holdout_losses"]))
    assert res.extra["stopped_by"] == "holdout" and res.steps == res.extra["holdout_steps"][best]
    assert res.message.startswith(f"ReLU two-layer, width {baselines.two_layer_width(cfg)}, rate ")


@pytest.mark.slow
def test_two_layer_sees_the_networks_data_and_the_holdout_losses_are_plain_mse():
    cfg = RunConfig(d=4, n=300, arch="two_layer", steps=40, n_test=256, m2=20, n_eval=1024)
    res = baselines.run(cfg)
    net = train.run(dataclasses.replace(cfg, arch="three_layer"))
    for name in ("p", "h"):  # the same monitor points and target
        np.testing.assert_array_equal(res.samples[name], net.samples[name])
    data = engine_data.make_data(dataclasses.replace(cfg, arch="three_layer"))
    params = {k: jax.numpy.asarray(v) for k, v in res.params.items()}
    f = model.feature(params, data.x_train, "relu")  # ReLU units, whatever cfg.sigma1 says
    assert res.metrics["train_loss"] == pytest.approx(float(np.mean((np.asarray(f) - np.asarray(data.y_train)) ** 2)), rel=1e-4)
    fit = baselines.tuning_split(cfg.n)
    assert fit == 240 and baselines.tuning_split(2) == 1


@pytest.mark.slow
def test_a_relu_two_layer_net_beats_every_cubic():
    """At d = 4, k = 3 no degree-≤3 predictor beats P_{≤3} h (the kernel's floor); the ReLU net does, on the same
    points by more than 3 paired standard errors. A net of cubic units could not."""
    cfg = RunConfig(d=4, n=8192, arch="two_layer", steps=2000, m2=100, tol=0.0, n_eval=2**17)
    res = baselines.run(cfg)
    data = engine_data.make_data(cfg)
    x, y = _eval_points(cfg, data)
    f = np.asarray(model.feature({k: jax.numpy.asarray(v) for k, v in res.params.items()}, x, "relu"), np.float64)
    proj = np.asarray(baselines.best_low_degree(x, data.lam, 3, data.C), np.float64)
    diff = (f - y) ** 2 - (proj - y) ** 2
    assert np.mean(diff) + 3 * np.std(diff) / np.sqrt(diff.size) < 0, (np.mean(diff), res.metrics)


@pytest.mark.slow
def test_two_layer_cancel_and_divergence():
    cfg = RunConfig(d=4, n=64, arch="two_layer", steps=200, n_test=64, m2=10)
    res = baselines.run(cfg, should_stop=lambda: True)
    assert res.status == "cancelled" and res.metrics == {} and "tuning" in res.message
    bad = baselines.run(dataclasses.replace(cfg, lr=1e30), chunk=50)
    assert bad.status == "diverged" and "non-finite" in bad.message


def test_baselines_refuse_the_network_arch():
    with pytest.raises(ValueError, match="kernel and two_layer"):
        baselines.run(RunConfig(d=4, n=64))
