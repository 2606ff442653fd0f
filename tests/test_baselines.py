"""The kernel and two-layer baselines: same data, sane metrics, and the kernel's degree-≤k floor."""
import dataclasses

import jax
import numpy as np
import pytest

from hierpoly.config import RunConfig
from hierpoly.engine import baselines
from hierpoly.engine import data as engine_data
from hierpoly.runs.codec import check
from hierpoly.runs.runner import to_result


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


def test_kernel_reaches_the_degree_k_floor_at_large_n():
    """At n ≫ C(d+3, 3) the ridge on spanning random features is the best cubic: its test loss
    matches the exact projection's on the same test points, and is far above the network's reach."""
    cfg = RunConfig(d=4, n=2048, arch="kernel", n_test=8192)
    res = baselines.run(cfg)
    assert res.status == "done" and res.extra["width"] == 35  # C(7, 3)
    data = engine_data.make_data(cfg)
    zero = float(np.mean(np.asarray(data.y_test) ** 2))
    best = float(np.mean((np.asarray(baselines.best_low_degree(data.x_test, data.lam, 3, data.C)) - np.asarray(data.y_test)) ** 2)) / zero
    # test losses are relative to the zero predictor's on the same points (metrics.relative_test_loss)
    assert res.metrics["test_loss"] >= best - 0.02 / zero  # absolute margins 0.02 and 0.1, rescaled
    assert res.metrics["test_loss"] <= best + 0.1 / zero
    assert res.metrics["test_loss"] >= 0.7  # a cubic explains little of h = C p³
    assert res.history[0].test_loss == pytest.approx(1.0, rel=1e-5)  # the zero predictor
    assert [r.step for r in res.history] == [0, 1]
    check(to_result(cfg, res, res.seconds))  # storable as is


def test_kernel_width_spans_degree_k():
    assert baselines.kernel_width(RunConfig(d=20, n=100)) == 1771  # C(23, 3) > d² = 400
    assert baselines.kernel_width(RunConfig(d=4, n=100, m1=50)) == 50


def test_two_layer_trains_and_reports_like_the_network():
    cfg = RunConfig(d=4, n=512, arch="two_layer", steps=300, n_test=1024, m2=50)
    rows = []
    res = baselines.run(cfg, on_progress=lambda row: rows.append(row) if row.is_history else None, chunk=100)
    assert res.status == "done" and res.steps == 300
    assert [r.step for r in rows] == [0, 100, 200, 300]
    assert set(res.params) == {"u", "s", "V"} and res.params["V"].shape == (16, 4)
    assert rows[-1].train_loss < rows[1].train_loss  # it learns
    assert res.metrics["train_loss"] < rows[0].train_loss
    assert 0 < res.metrics["feature_corr"] <= 1
    assert np.isfinite(res.samples["h_pred"]).all() and res.samples["g"].shape == (1024,)
    check(to_result(cfg, res, res.seconds))
    # deterministic: the same config gives the same numbers
    again = baselines.run(cfg, chunk=100)
    assert again.metrics == res.metrics


def test_two_layer_cancel_and_divergence():
    cfg = RunConfig(d=4, n=64, arch="two_layer", steps=200, n_test=64, m2=10)
    res = baselines.run(cfg, should_stop=lambda: True)
    assert res.status == "cancelled" and res.metrics == {}
    bad = baselines.run(dataclasses.replace(cfg, lr=1e6), chunk=50)
    assert bad.status == "diverged" and "non-finite" in bad.message


def test_baselines_refuse_the_network_arch():
    with pytest.raises(ValueError, match="kernel and two_layer"):
        baselines.run(RunConfig(d=4, n=64))
