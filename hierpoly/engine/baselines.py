"""Figure 2's baselines, trained on the same data as the three-layer network.

A baseline config is the three-layer config with ``arch`` replaced, so it sees the
same seed, hence the same signs λ, training set and test set (``train.make_data``),
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
    convergence rule and step cap as joint training (train.py).

For both, ``feature_corr`` is the Pearson correlation between the predictor's
output and the true feature p(x) (a baseline has no separate learned feature), and
the samples' ``g`` column holds that output as well. Final metrics are over the same
n_eval evaluation points as the network's (``train.population_metrics``).
"""
from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax

from hierpoly import targets
from hierpoly.config import RunConfig, poly_space_dim
from hierpoly.engine import model, train
from hierpoly.engine.metrics import mse, pearson, relative_test_loss

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
    on_progress: Callable[[train.Progress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    chunk: int = 100,
) -> train.TrainResult:
    """Train the baseline named by ``cfg.arch`` (kernel or two_layer) on the run's data."""
    if cfg.arch == "kernel":
        return _run_kernel(cfg, on_progress, should_stop)
    if cfg.arch == "two_layer":
        return _run_two_layer(cfg, on_progress, should_stop, chunk)
    raise ValueError(f"baselines.run handles kernel and two_layer, got arch {cfg.arch!r}")


# ------------------------------------------------------------------------ shared
def _report(history, on_progress, t0, step, train_loss, pred_test, data) -> None:
    row = train.Progress(
        step,
        float(train_loss),
        float(relative_test_loss(pred_test, data.y_test)),
        float(pearson(pred_test, data.p_test)),
        time.perf_counter() - t0,
    )
    history.append(row)
    if on_progress is not None:
        on_progress(row)


def _samples(pred_test, data: train.Data) -> dict[str, np.ndarray]:
    rows = train.SAMPLE_ROWS
    pred = np.asarray(pred_test[:rows], np.float32)
    return {
        "p": np.asarray(data.p_test[:rows], np.float32),
        "g": pred,  # a baseline has no separate feature: its output stands in
        "h": np.asarray(data.y_test[:rows], np.float32),
        "h_pred": pred,
    }


def _result(cfg, status, message, steps, params, pred_train, pred_test, data, history, t0, extra, fitted=None) -> train.TrainResult:
    """`fitted(x)`: the predictor on new points, for the final metrics (needed when done)."""
    metrics = {}
    if status == "done":
        def output_as_feature(x):  # a baseline has no separate feature: its output stands in
            out = fitted(x)
            return out, out

        metrics = {
            "train_loss": float(mse(pred_train, data.y_train)),
            **train.population_metrics(cfg, data.lam, output_as_feature),
        }
    return train.TrainResult(
        status=status,
        message=message,
        steps=steps,
        metrics=metrics,
        history=history,
        samples=_samples(pred_test, data) if status == "done" else {},
        params={k: np.asarray(v) for k, v in params.items()},
        seconds=time.perf_counter() - t0,
        data_C=data.C,
        extra={"baseline": cfg.arch, **extra},
    )


def _first_block(cfg: RunConfig, width: int) -> dict[str, jax.Array]:
    """(u, s, V) of model.init for this seed at the given width; u = 0."""
    params = model.init(train.keys(cfg.seed)["init"], dataclasses.replace(cfg, m1=width))
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


def _run_kernel(cfg, on_progress, should_stop) -> train.TrainResult:
    t0 = time.perf_counter()
    data = train.make_data(cfg)
    width = kernel_width(cfg)
    params = _first_block(cfg, width)
    history: list[train.Progress] = []
    zero_test = jnp.zeros_like(data.y_test)
    _report(history, on_progress, t0, 0, mse(jnp.zeros_like(data.y_train), data.y_train), zero_test, data)
    if should_stop is not None and should_stop():
        zero_train = jnp.zeros_like(data.y_train)
        return _result(cfg, "cancelled", "cancelled before the fit", 0, params, zero_train, zero_test, data, history, t0, {})
    # Pick the ridge penalty on a held-out fifth, then refit on everything.
    n_fit = max(1, int(round(cfg.n * (1 - HOLDOUT))))
    x_fit, y_fit = data.x_train[:n_fit], data.y_train[:n_fit]
    x_val, y_val = data.x_train[n_fit:], np.asarray(data.y_train[n_fit:], np.float64)
    G_fit, b_fit = _gram(params, x_fit, y_fit, cfg.sigma1)
    scale = max(float(np.trace(G_fit)) / width, 1e-30)  # mean feature energy: makes the grid scale-free
    penalties = [r * scale for r in RIDGE_GRID]
    if x_val.shape[0] > 0:
        ws = _ridge(G_fit, b_fit, penalties)
        val_losses = [float(np.mean((_predict(params, w, x_val, cfg.sigma1) - y_val) ** 2)) for w in ws]
        best = int(np.nanargmin(val_losses))
        G_val, b_val = _gram(params, x_val, data.y_train[n_fit:], cfg.sigma1)
        G_fit, b_fit = G_fit + G_val, b_fit + b_val
    else:
        val_losses, best = [], len(RIDGE_GRID) // 2
    (w,) = _ridge(G_fit, b_fit, [penalties[best]])
    pred_train = _predict(params, w, data.x_train, cfg.sigma1)
    pred_test = _predict(params, w, data.x_test, cfg.sigma1)
    if not (np.isfinite(w).all() and np.isfinite(pred_test).all()):
        return _result(cfg, "diverged", "the ridge fit is not finite", 1, params, pred_train, pred_test, data, history, t0, {})
    _report(history, on_progress, t0, 1, np.mean((pred_train - np.asarray(data.y_train)) ** 2), pred_test, data)
    params = {**params, "u": jnp.asarray(w * width, jnp.float32)}  # model.feature divides by the width
    extra = {"width": width, "ridge_relative": RIDGE_GRID[best], "validation_losses": val_losses}
    message = f"closed-form ridge on {width} random features (relative penalty {RIDGE_GRID[best]:g})"
    fitted = lambda x: _predict(params, w, x, cfg.sigma1)
    return _result(cfg, "done", message, 1, params, pred_train, pred_test, data, history, t0, extra, fitted)


# --------------------------------------------------------------------- two_layer
def _two_layer_loss(params, x, y, sigma1: str):
    return mse(model.feature(params, x, sigma1), y)


_two_layer_predict = jax.jit(model.feature_chunked, static_argnames=("sigma1", "chunk"))


@partial(jax.jit, static_argnames=("tx", "sigma1", "n_steps"))
def _two_layer_chunk(params, opt_state, x, y, *, tx, sigma1: str, n_steps: int):
    """n_steps of full-batch Adam on (u, s, V); losses before each step."""

    def step(carry, _):
        params, opt_state = carry
        loss, grads = jax.value_and_grad(_two_layer_loss)(params, x, y, sigma1)
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), loss

    (params, opt_state), losses = jax.lax.scan(step, (params, opt_state), None, length=n_steps)
    return params, opt_state, losses


def _run_two_layer(cfg, on_progress, should_stop, chunk: int) -> train.TrainResult:
    t0 = time.perf_counter()
    data = train.make_data(cfg)
    params = _first_block(cfg, cfg.m1)
    tx = train.joint_optimizer(cfg)
    opt_state = tx.init(params)
    history: list[train.Progress] = []

    def predict(p):
        return model.feature(p, data.x_train, cfg.sigma1), model.feature(p, data.x_test, cfg.sigma1)

    def finish(status, message, steps, p, extra):
        pred_train, pred_test = predict(p)
        fitted = partial(_two_layer_predict, p, sigma1=cfg.sigma1)
        return _result(cfg, status, message, steps, p, pred_train, pred_test, data, history, t0, extra, fitted)

    _report(history, on_progress, t0, 0, _two_layer_loss(params, data.x_train, data.y_train, cfg.sigma1), predict(params)[1], data)
    best, best_at, step = math.inf, 0, 0
    while step < cfg.steps:
        if should_stop is not None and should_stop():
            return finish("cancelled", f"cancelled at step {step}", step, params, {})
        n_steps = min(chunk, cfg.steps - step)
        new_params, opt_state, losses = _two_layer_chunk(
            params, opt_state, data.x_train, data.y_train, tx=tx, sigma1=cfg.sigma1, n_steps=n_steps
        )
        losses = np.asarray(losses)
        bad = np.flatnonzero(~np.isfinite(losses))
        if bad.size or not all(np.isfinite(np.asarray(v)).all() for v in new_params.values()):
            at = step + (int(bad[0]) if bad.size else n_steps)
            return finish("diverged", f"training loss became non-finite at step {at}", at, params, {})
        params, step = new_params, step + n_steps
        _report(history, on_progress, t0, step, losses[-1], predict(params)[1], data)
        # the plateau rule of joint training (train.py)
        chunk_best = float(losses.min())
        if chunk_best < best * (1 - cfg.tol):
            best, best_at = chunk_best, step
        elif step - best_at >= cfg.patience:
            return finish("done", f"converged: train loss plateaued at step {step}", step, params, {"stopped_by": "plateau"})
    return finish("done", f"reached the step cap of {cfg.steps}", step, params, {"stopped_by": "step cap"})
