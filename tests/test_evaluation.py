"""The final evaluation: streamed over n_eval fresh points, equal to the one-shot metrics."""
import jax
import numpy as np
import pytest

from hierpoly.config import ConfigError, RunConfig
from hierpoly.engine import baselines, evaluation, metrics, model, train


def _eval_points(cfg):
    """All of a run's evaluation points at once, drawn as population_metrics draws them."""
    key = train.keys(cfg.seed)["eval"]
    sizes = [min(evaluation.EVAL_CHUNK, cfg.n_eval - s) for s in range(0, cfg.n_eval, evaluation.EVAL_CHUNK)]
    return np.concatenate([np.asarray(jax.random.normal(jax.random.fold_in(key, i), (m, cfg.d))) for i, m in enumerate(sizes)])


def _reference(pred, y, g, p) -> dict:
    """The final metrics written out per point in float64: the slow path `from_sums` must match."""
    pred, y, g, p = (np.asarray(v, np.float64) for v in (pred, y, g, p))
    e, q = (pred - y) ** 2, y**2
    cov = np.cov(e, q)  # ddof 1
    beta = cov[0, 1] / cov[1, 1]
    return {
        "test_loss": e.mean(), "test_loss_se": e.std(ddof=1) / np.sqrt(e.size), "mean_h2": q.mean(),
        "test_loss_cv": e.mean() - beta * (q.mean() - 1), "test_loss_cv_se": (e - beta * q).std(ddof=1) / np.sqrt(e.size),
        "feature_corr": np.corrcoef(g, p)[0, 1],
    }


@pytest.mark.slow
def test_sums_over_uneven_chunks_give_the_per_point_metrics():
    k = jax.random.split(jax.random.PRNGKey(0), 4)
    y, p = jax.random.normal(k[0], (1000,)) ** 3, jax.random.normal(k[1], (1000,))
    g = 3.0 * p + 0.3 * jax.random.normal(k[2], (1000,)) + 2.0  # a mean far from 0: centring matters
    pred = 0.8 * y + 0.5 * jax.random.normal(k[3], (1000,))  # errors that grow with h²: the control variate bites
    sums = sum(np.asarray(metrics.chunk_sums(pred[i:i + 300], y[i:i + 300], g[i:i + 300], p[i:i + 300]), np.float64)
               for i in range(0, 1000, 300))
    got, want = metrics.from_sums(sums, 1000), _reference(pred, y, g, p)
    assert got == {name: pytest.approx(value, rel=1e-4) for name, value in want.items()}
    assert got["test_loss"] == pytest.approx(float(metrics.mse(pred, y)), rel=1e-5)  # plain MSE, not a ratio
    assert got["test_loss_cv_se"] < 0.8 * got["test_loss_se"]  # h² explains much of the error's noise here
    zero = metrics.from_sums(np.asarray(metrics.chunk_sums(0 * y, y, 0 * p, p)), 1000)
    # the zero predictor: MSE = mean h², and the control variate takes the sample's excess off exactly (e = q)
    assert zero["test_loss"] == pytest.approx(zero["mean_h2"]) and zero["test_loss_cv"] == pytest.approx(1.0)
    assert zero["test_loss_cv_se"] == pytest.approx(0.0, abs=1e-6) and zero["feature_corr"] == 0.0


@pytest.mark.slow
def test_population_metrics_stream_the_runs_own_points(monkeypatch):
    monkeypatch.setattr(evaluation, "EVAL_CHUNK", 700)  # 3 chunks, the last one short
    cfg = RunConfig(d=5, n=64, m2=20, n_eval=2000)
    data = train.make_data(cfg)
    params = model.init(train.keys(cfg.seed)["init"], cfg)
    params = {**params, "u": params["u"] + 1.0, "c": params["c"] + 0.5}  # a network that predicts something
    got = evaluation.population_metrics(cfg, data.lam, evaluation.network_output, params, model.Forward(cfg.sigma1))
    x = _eval_points(cfg)
    fn, _ = train.target_fn(cfg, data.lam)
    y, p = fn(x)
    g = model.feature(params, x, cfg.sigma1)
    assert got == {name: pytest.approx(v, rel=1e-4) for name, v in _reference(model.link_out(params, g), y, g, p).items()}
    assert not {r.tobytes() for r in x} & {r.tobytes() for r in np.asarray(data.x_test)}  # fresh: not the monitor points
    exact = evaluation.host_population_metrics(cfg, data.lam, lambda x: fn(x))  # predicting h, with p as the feature
    assert exact["test_loss"] == 0.0 and exact["test_loss_se"] == 0.0 and exact["feature_corr"] == pytest.approx(1.0)


@pytest.mark.slow
def test_a_finished_run_reports_the_population_metrics_of_its_parameters():
    cfg = RunConfig(d=4, n=256, m2=30, steps=100, n_test=256, n_eval=5000)
    result = train.run(cfg)
    params = {k: jax.numpy.asarray(v) for k, v in result.params.items()}
    data = train.make_data(cfg)
    again = evaluation.population_metrics(cfg, data.lam, evaluation.network_output, params, model.Forward(cfg.sigma1))
    assert all(result.metrics[name] == pytest.approx(again[name], rel=1e-6) for name in again)
    assert result.metrics["test_loss"] != pytest.approx(result.history[-1].test_loss, rel=1e-3)  # monitor ≠ final


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["kernel", "two_layer"])
def test_baselines_are_scored_on_the_same_points(arch):
    cfg = RunConfig(d=4, n=512, m2=30, steps=50, n_test=256, n_eval=3000, arch=arch)
    result = baselines.run(cfg)
    assert result.status == "done"
    data = train.make_data(cfg)
    x = _eval_points(cfg)
    fn, _ = train.target_fn(cfg, data.lam)
    y, p = fn(x)
    params = {k: jax.numpy.asarray(v) for k, v in result.params.items()}
    sigma1 = "relu" if arch == "two_layer" else cfg.sigma1  # the two-layer baseline has ReLU units
    out = model.feature(params, x, sigma1)  # both baselines predict with their first block (u carries the fit)
    want = _reference(out, y, out, p)
    # the control variate's SE is a difference of float32 sums: exact to a small share of the plain SE
    tolerance = {"test_loss_cv_se": 1e-3 * want["test_loss_se"]}
    got = {name: result.metrics[name] for name in want}
    assert got == {name: pytest.approx(v, rel=1e-3, abs=tolerance.get(name, 0)) for name, v in want.items()}


@pytest.mark.parametrize("n_eval", [15, 2**26 + 1, 1.5])
def test_n_eval_is_validated(n_eval):
    with pytest.raises(ConfigError, match="n_eval"):
        RunConfig(d=4, n=64, n_eval=n_eval)
