"""Figure 2's baselines, trained on the same data as the three-layer network.

A baseline config is the three-layer config with ``arch`` replaced, so it sees the
same seed, hence the same signs λ, training set and test set (``data.make_data``),
and reports the same metrics and progress rows as ``train.run``.

kernel **[our construction of the paper's comparison]**
    Random features: the first layer's features φ_i(x) = σ1(v_i·x + s_i) at
    initialisation (``model.init``, the same draw as the network's), fitted to h
    directly by ridge regression — Algorithm 1's stage 1 alone, with no second
    block. Width ``kernel_width(cfg) = max(cfg.m1, C(d+k, k))``: with σ1 = cube,
    C(d+k, k) generic features span every polynomial of degree ≤ k (k = 3), so the
    predictor is the best degree-≤k fit and its test loss cannot go below
    ``kernel_floor(d, k) = 1 − ||P_{≤k} h||²`` (≈ 0.73–0.81 for d = 4..20), however
    large n is. The fit is closed form (float64 normal equations): the ridge
    penalty is picked from a grid by validation on a held-out fifth of the training
    set, then refitted on all of it — the best this predictor can do, not a
    straw man. No gradient steps: progress has two rows (step 0: the zero
    predictor; step 1: the fit).

two_layer **[our construction]**
    f(x) = (1/m) Σ_i u_i σ1(v_i·x + s_i), m = cfg.m1 (d² by default) — the network's
    first block alone, trained on h with (u, s, V) all learned jointly by full-batch
    Adam at the config's rate, from the same initialisation, under the same
    convergence rule and step cap as joint training (the one loop, loop.py).

For both, ``feature_corr`` is the Pearson correlation between the predictor's
output and the true feature p(x) (a baseline has no separate learned feature), and
the samples' ``g`` column holds that output as well. Final metrics are over the same
n_eval evaluation points as the network's (``evaluation.population_metrics``).
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from hierpoly import targets
from hierpoly.config import RunConfig, poly_space_dim
from hierpoly.engine import evaluation, loop, model
from hierpoly.engine.data import Data, keys, make_data
from hierpoly.engine.loop import TrainResult
from hierpoly.engine.metrics import mse, pearson, relative_test_loss
from hierpoly.progress import Progress

RIDGE_GRID = tuple(10.0**e for e in range(-10, 2))  # penalties relative to the mean feature energy
HOLDOUT = 0.2  # fraction of the training set used to pick the ridge penalty
_ROWS = 8192  # rows of features built at a time (memory)


def kernel_width(cfg: RunConfig) -> int:
    """Random features used by the kernel baseline: enough to span degree ≤ k polynomials."""
    return max(cfg.m1, poly_space_dim(cfg.d, cfg.k))


def low_degree_coefficients(d: int, k: int = 3) -> np.ndarray:
    """c_0..c_k with P_{≤k} p³ = Σ_l λ_l Σ_j c_j h_j(x_l), exactly (the cubic link's projection).

    Expanding p³ = Σ_{i,j,l} λ_iλ_jλ_l h_k(x_i)h_k(x_j)h_k(x_l), only i = j = l and the
    pairs (two equal indices, the third l apart: 3(d-1) of them per l, where h_k(x_i)²
    contributes its mean 1) have components of degree ≤ k; all three apart have degree 3k.
    So c_j = E[h_k³ h_j] for j < k and c_k = E[h_k⁴] + 3(d-1).
    """

    def moment(*degrees):  # E[Π h_j(z)] exactly, through Gaussian moments
        poly = np.array([1.0])
        for j in degrees:
            coefs = np.array(targets.hermite_coefficients(j), float) / math.sqrt(math.factorial(j))
            poly = np.polynomial.polynomial.polymul(poly, coefs)
        return sum(c * (0 if i % 2 else math.prod(range(i - 1, 0, -2))) for i, c in enumerate(poly))

    out = np.array([moment(k, k, k, j) for j in range(k + 1)])
    out[k] += 3 * (d - 1)
    return out


def best_low_degree(x, lam, k: int, C: float):
    """P_{≤k} h(x) for h = C p³: the best predictor of degree ≤ k, (n,)."""
    coefs = low_degree_coefficients(x.shape[-1], k)
    return C * sum(c * (targets.hermite(j, x) @ lam) for j, c in enumerate(coefs))


def kernel_floor(d: int, k: int = 3, link: str = "cubic", n_minus: int = 0) -> float:
    """Exact 1 − ||P_{≤k} h||² for h = C p³: the lowest test loss of any degree-≤k predictor.

    The j ≥ 1 terms of ``low_degree_coefficients`` are orthonormal across l; the constant
    (j = 0, even k only) adds up to c_0 Σ_l λ_l. Only the paper's cubic link is supported.
    Note that with heavy tails a test set of a few thousand points underestimates every
    loss (E[h²] = 1 is carried by rare large values): compare on the same points instead,
    with ``best_low_degree``.
    """
    if targets.canonical_link(link) != "cubic":
        raise ValueError(f"kernel_floor knows only the cubic link, got {link!r}")
    C = targets.normalisation(d, k, targets.LINK_PRESETS["cubic"], n_minus if k % 2 == 0 else 0).C
    coefs = low_degree_coefficients(d, k)
    energy = (coefs[0] * (d - 2 * n_minus)) ** 2 + d * float(np.sum(coefs[1:] ** 2))
    return 1.0 - C**2 * energy


def run(
    cfg: RunConfig,
    on_progress: Callable[[Progress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    chunk: int | None = None,
) -> TrainResult:
    """Train the baseline named by ``cfg.arch`` (kernel or two_layer) on the run's data."""
    if cfg.arch not in ("kernel", "two_layer"):
        raise ValueError(f"baselines.run handles kernel and two_layer, got arch {cfg.arch!r}")
    reporter = loop.Reporter(1, None if on_progress is None else lambda _, row: on_progress(row))
    data = make_data(cfg)
    reporter.start([data.p_test])
    if cfg.arch == "kernel":
        return _run_kernel(cfg, data, reporter, should_stop)
    return _run_two_layer(cfg, data, reporter, should_stop, chunk)


# ------------------------------------------------------------------------ shared
def _report(reporter: loop.Reporter, step: int, train_loss, pred_test, data: Data) -> None:
    """A history row of a predictor whose output on the monitor points is `pred_test` (it stands in for g)."""
    pred_test = np.asarray(pred_test, np.float32)
    test_loss, corr = relative_test_loss(pred_test, data.y_test), pearson(pred_test, data.p_test)
    reporter.row(0, step, train_loss, test_loss, corr, pred_test[: evaluation.SNAPSHOT_POINTS])


def _result(cfg, ended: tuple, params, train_loss, pred_test, data: Data, reporter, metrics_of) -> TrainResult:
    """`metrics_of(on_fraction)`: the population metrics, needed only when the run is done."""
    status, message, steps, extra = ended
    metrics, samples = {}, {}
    if status == "done":
        reporter.phase("evaluating", steps, 0.0)
        on_fraction = lambda f: reporter.phase("evaluating", steps, f)  # noqa: E731
        metrics = {"train_loss": float(train_loss), **metrics_of(on_fraction)}
        samples = evaluation.samples(pred_test, pred_test, data)  # the output stands in for g
    return TrainResult(
        status=status, message=message, steps=steps, metrics=metrics, history=reporter.histories[0], samples=samples,
        params={k: np.asarray(v) for k, v in params.items()}, seconds=reporter.seconds(), data_C=data.C,
        extra={"baseline": cfg.arch, **extra},
    )


def _first_block(cfg: RunConfig, width: int) -> dict[str, jax.Array]:
    """(u, s, V) of model.init for this seed at the given width; u = 0."""
    params = model.init(keys(cfg.seed)["init"], dataclasses.replace(cfg, m1=width))
    return {name: params[name] for name in ("u", "s", "V")}


# ------------------------------------------------------------------------ kernel
def _gram(params, x, y, sigma1: str) -> tuple[np.ndarray, np.ndarray]:
    """φᵀφ and φᵀy in float64, building φ a block of rows at a time."""
    m = params["V"].shape[0]
    G, b = np.zeros((m, m)), np.zeros(m)
    for start in range(0, x.shape[0], _ROWS):
        phi = np.asarray(model.first_features(params, x[start : start + _ROWS], sigma1), np.float64)
        G += phi.T @ phi
        b += phi.T @ np.asarray(y[start : start + _ROWS], np.float64)
    return G, b


def _predict(params, w: np.ndarray, x, sigma1: str) -> np.ndarray:
    out = [
        np.asarray(model.first_features(params, x[s : s + _ROWS], sigma1), np.float64) @ w
        for s in range(0, x.shape[0], _ROWS)
    ]
    return np.concatenate(out)


def _ridge(G: np.ndarray, b: np.ndarray, penalties) -> list[np.ndarray]:
    """argmin_w ||φw - y||² + λ||w||² for each λ, from one eigendecomposition of G = φᵀφ."""
    evals, Q = np.linalg.eigh(G)
    qb = Q.T @ b
    return [Q @ (qb / (np.maximum(evals, 0.0) + lam)) for lam in penalties]


def _pick_penalty(cfg: RunConfig, params, data: Data, width: int):
    """The ridge penalty picked on a held-out fifth, and φᵀφ, φᵀy over the whole training set."""
    n_fit = max(1, int(round(cfg.n * (1 - HOLDOUT))))
    x_val, y_val = data.x_train[n_fit:], np.asarray(data.y_train[n_fit:], np.float64)
    G, b = _gram(params, data.x_train[:n_fit], data.y_train[:n_fit], cfg.sigma1)
    scale = max(float(np.trace(G)) / width, 1e-30)  # mean feature energy: makes the grid scale-free
    penalties = [r * scale for r in RIDGE_GRID]
    if x_val.shape[0] == 0:
        return penalties, len(RIDGE_GRID) // 2, [], G, b
    val_losses = [float(np.mean((_predict(params, w, x_val, cfg.sigma1) - y_val) ** 2)) for w in _ridge(G, b, penalties)]
    G_val, b_val = _gram(params, x_val, data.y_train[n_fit:], cfg.sigma1)
    return penalties, int(np.nanargmin(val_losses)), val_losses, G + G_val, b + b_val


def _run_kernel(cfg: RunConfig, data: Data, reporter: loop.Reporter, should_stop) -> TrainResult:
    width = kernel_width(cfg)
    params = _first_block(cfg, width)
    zero_loss, zero_test = np.mean(np.asarray(data.y_train, np.float64) ** 2), np.zeros(cfg.n_test)
    _report(reporter, 0, zero_loss, zero_test, data)
    if should_stop is not None and should_stop():
        return _result(cfg, ("cancelled", "cancelled before the fit", 0, {}), params, zero_loss, zero_test, data, reporter, None)
    penalties, best, val_losses, G, b = _pick_penalty(cfg, params, data, width)
    (w,) = _ridge(G, b, [penalties[best]])
    pred_train = _predict(params, w, data.x_train, cfg.sigma1)
    pred_test = _predict(params, w, data.x_test, cfg.sigma1)
    if not (np.isfinite(w).all() and np.isfinite(pred_test).all()):
        ended = ("diverged", "the ridge fit is not finite", 1, {})
        return _result(cfg, ended, params, np.nan, pred_test, data, reporter, None)
    train_loss = float(mse(pred_train, data.y_train))
    _report(reporter, 1, np.mean((pred_train - np.asarray(data.y_train)) ** 2), pred_test, data)
    params = {**params, "u": jnp.asarray(w * width, jnp.float32)}  # model.feature divides by the width
    extra = {"width": width, "ridge_relative": RIDGE_GRID[best], "validation_losses": val_losses}
    message = f"closed-form ridge on {width} random features (relative penalty {RIDGE_GRID[best]:g})"

    def output_as_feature(x):  # a baseline has no separate feature: its output stands in
        out = _predict(params, w, x, cfg.sigma1)
        return out, out

    metrics_of = lambda on_fraction: evaluation.host_population_metrics(cfg, data.lam, output_as_feature, on_fraction)  # noqa: E731
    return _result(cfg, ("done", message, 1, extra), params, train_loss, pred_test, data, reporter, metrics_of)


# --------------------------------------------------------------------- two_layer
def first_block_loss(params, batch, forward: model.Forward):
    """Square loss of the first block alone on batch = (x, y)."""
    x, y = batch
    return mse(model.feature(params, x, forward.sigma1), y)


def two_layer_step(state, batch, hyper, forward: model.Forward):
    """One full-batch Adam step on (u, s, V)."""
    return loop.adam_step(first_block_loss, state, batch, hyper, forward)


def score_first_block(state, monitor, forward: model.Forward):
    """Monitor scores of the two-layer state (params, Adam state)."""
    return evaluation.monitor_scores(state[0], *monitor, predict=evaluation.first_block_output, forward=forward)


_first_block_loss = jax.jit(first_block_loss, static_argnames=("forward",))


def _run_two_layer(cfg: RunConfig, data: Data, reporter: loop.Reporter, should_stop, chunk) -> TrainResult:
    params, forward = _first_block(cfg, cfg.m1), model.Forward(cfg.sigma1)
    task, monitor = loop.Task(two_layer_step, score_first_block, forward), (data.x_test, data.y_test, data.p_test)
    zero_loss = np.mean(np.square(np.asarray(data.y_train, np.float32)), dtype=np.float32)  # u = 0: the output is 0
    loop.report_start(task, loop.adam_state(params), monitor, zero_loss, reporter)
    end = loop.run_loop(
        task, loop.adam_state(params), (data.x_train, data.y_train), monitor, {"lr": jnp.float32(cfg.lr)},
        loop.rules_for(cfg), reporter, should_stop, chunk_steps=chunk,
    )
    params = end.state[0]
    status, message, extra = loop.outcome(end.endings[0], end.steps[0], cfg.steps, end.drops[0])
    pred_test = loop.scores(task, end.state, monitor, batched=False)[2][0]

    def metrics_of(on_fraction):
        return evaluation.population_metrics(cfg, data.lam, evaluation.first_block_output, params, forward, on_fraction)

    train_loss = _first_block_loss(params, (data.x_train, data.y_train), forward) if status == "done" else np.nan
    ended = (status, message, end.steps[0], extra)
    return _result(cfg, ended, params, train_loss, pred_test, data, reporter, metrics_of)
