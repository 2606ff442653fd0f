"""How a predictor is scored: on the monitor points while training, on n_eval fresh points at the end.

A predictor is a module-level function ``(params, x, forward) -> (h_θ(x), g(x))``:
`network_output` for the three-layer network, `first_block_output` for the two-layer
baseline (its output stands in as the feature). Both kinds of scoring are compiled
once per shape; parameters and the target's values are arguments.

The final metrics stream ``cfg.n_eval`` points, EVAL_CHUNK at a time (chunk i drawn
from fold_in(key "eval", i), the same points for every architecture of a seed). All
chunks are dispatched at once and their sums collected in order, so the device never
waits for the host between chunks while the caller still sees the fraction done.
"""
from __future__ import annotations

from collections.abc import Callable
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from hierpoly.config import RunConfig
from hierpoly.engine import model
from hierpoly.engine.data import Data, Target, draw, keys, target
from hierpoly.engine.metrics import SUM_NAMES, chunk_sums, from_sums, pearson, relative_test_loss

SAMPLE_ROWS = 2000  # test points kept for plots
SNAPSHOT_POINTS = 256  # monitor points whose learned feature g each history row carries
EVAL_CHUNK = 65536  # evaluation points drawn and scored at a time (memory stays flat in n_eval)


def network_output(params, x, forward: model.Forward):
    """(h_θ(x), g(x)) of the three-layer network."""
    g = forward.feature(params, x)
    return forward.link_out(params, g), g


def first_block_output(params, x, forward: model.Forward):
    """(f(x), f(x)) of the first block alone: a baseline has no separate feature, its output stands in."""
    out = forward.feature(params, x)
    return out, out


def monitor_scores(params, x, y, p, *, predict: Callable, forward: model.Forward):
    """Test loss and feature correlation on the monitor points, and h_θ, g on the first SAMPLE_ROWS of them."""
    pred, g = predict(params, x, forward)
    return relative_test_loss(pred, y), pearson(g, p), pred[:SAMPLE_ROWS], g[:SAMPLE_ROWS]


@partial(jax.jit, static_argnames=("predict", "forward", "rows", "k"))
def _chunk_sums(params, key, i, lam, coefs, C, g_range, *, predict: Callable, forward: model.Forward, rows: int, k: int):
    x, y, p = draw(jax.random.fold_in(key, i), rows, Target(lam, coefs, C, k))
    pred, g = predict(params, x, forward)
    sums = chunk_sums(pred.astype(jnp.float32), y, g.astype(jnp.float32), p)
    if g_range is None:
        return sums
    err, outside = (pred.astype(jnp.float32) - y) ** 2, (g < g_range[0]) | (g > g_range[1])
    return jnp.concatenate([sums, jnp.stack([jnp.sum(jnp.where(outside, err, 0.0)), jnp.sum(outside)])])


def _chunk_rows(n_eval: int) -> list[int]:
    return [min(EVAL_CHUNK, n_eval - start) for start in range(0, n_eval, EVAL_CHUNK)]


def population_metrics(
    cfg: RunConfig, lam, predict: Callable, params, forward: model.Forward, on_fraction: Callable | None = None,
    g_range: tuple[float, float] | None = None,
) -> dict[str, float]:
    """The final metrics of `predict` over cfg.n_eval fresh points (`metrics.from_sums`: MSE with its SE, …).

    Args:
        predict: a module-level predictor (module docstring), compiled with `forward`.
        on_fraction: called with the share of the points scored so far, chunk by chunk.
        g_range: (lo, hi), the range of g on the training points, beyond which a ReLU link only extrapolates
            linearly: the metrics gain the share of points whose g lies outside it (outside_points) and their
            share of the squared error (outside_loss_share), from the same pass.
    """
    tgt, key = target(cfg, lam), keys(cfg.seed)["eval"]
    bounds = None if g_range is None else tuple(jnp.float32(v) for v in g_range)
    pending = [
        _chunk_sums(params, key, i, tgt.lam, tgt.coefs, tgt.C, bounds, predict=predict, forward=forward, rows=rows, k=tgt.k)
        for i, rows in enumerate(_chunk_rows(cfg.n_eval))
    ]
    return _collect(pending, cfg.n_eval, on_fraction)


def host_population_metrics(cfg: RunConfig, lam, predict: Callable, on_fraction: Callable | None = None) -> dict:
    """`population_metrics` for a predictor that runs on the host: `predict(x)` -> (h_θ(x), g(x))."""
    tgt, key = target(cfg, lam), keys(cfg.seed)["eval"]
    pending = []
    for i, rows in enumerate(_chunk_rows(cfg.n_eval)):
        x, y, p = draw(jax.random.fold_in(key, i), rows, tgt)
        pred, g = predict(x)
        pending.append(chunk_sums(jnp.asarray(pred, jnp.float32), y, jnp.asarray(g, jnp.float32), p))
    return _collect(pending, cfg.n_eval, on_fraction)


def _collect(pending: list, n_eval: int, on_fraction: Callable | None) -> dict[str, float]:
    """Add the chunks' sums in float64, in order, reporting the fraction done after each."""
    sums, done = 0.0, 0
    for rows, chunk in zip(_chunk_rows(n_eval), pending):
        sums = sums + np.asarray(chunk, np.float64)
        done += rows
        if on_fraction is not None:
            on_fraction(done / n_eval)
    metrics, tail = from_sums(sums[:len(SUM_NAMES)], n_eval), sums[len(SUM_NAMES):]
    if len(tail):
        metrics |= {"outside_points": float(tail[1] / n_eval), "outside_loss_share": float(tail[0] / max(sums[0], 1e-30))}
    return metrics


def samples(pred_test, g_test, data: Data) -> dict[str, np.ndarray]:
    """The first SAMPLE_ROWS monitor points: p(x), g(x), h(x), h_θ(x)."""
    rows = SAMPLE_ROWS
    return {
        "p": np.asarray(data.p_test[:rows], np.float32),
        "g": np.asarray(g_test[:rows], np.float32),
        "h": np.asarray(data.y_test[:rows], np.float32),
        "h_pred": np.asarray(pred_test[:rows], np.float32),
    }
