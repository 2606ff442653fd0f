"""What a run is judged by: square loss and feature correlation."""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np


def mse(pred, target):
    """Mean square error; since E[h^2] = 1, predicting 0 scores about 1."""
    return jnp.mean((pred - target) ** 2)


def relative_test_loss(pred, target):
    """The live curves' test loss: mse(pred, h) / mean(h^2) on the monitor points (a biased ratio).

    h is heavy-tailed (E[h^4] is in the thousands at d = 8), so the plain mean over 8192 monitor
    points swings by a factor of 3 between seeds; the ratio is stable (the zero predictor scores
    exactly 1 on any set) and so draws a readable curve, but it is biased low, and a few thousand
    points rarely see the far tail where a ReLU network, linear beyond its data, misses a cubic link
    most. A run's reported test loss is the plain MSE over n_eval points with its standard error (`from_sums`).
    """
    return mse(pred, target) / jnp.mean(target**2)


def pearson(a, b):
    """Pearson correlation of two vectors; 0 when either is constant (e.g. g = 0 at init)."""
    a = a - a.mean()
    b = b - b.mean()
    denom = jnp.sqrt(jnp.sum(a * a) * jnp.sum(b * b))
    return jnp.where(denom > 0, jnp.sum(a * b) / jnp.where(denom > 0, denom, 1.0), 0.0)


# Streaming the final evaluation: sums per chunk, combined in float64 on the host.
# e = (h_θ - h)² and q = h² per point: e, e², q, q², e·q give the MSE, its standard error and the control variate.
SUM_NAMES = ("e", "e2", "q", "q2", "eq", "g", "p", "g2", "p2", "gp")


def chunk_sums(pred, y, g, p):
    """The sums `from_sums` needs, over one chunk of evaluation points: (10,)."""
    e, q = (pred - y) ** 2, y * y
    return jnp.stack([e.sum(), (e * e).sum(), q.sum(), (q * q).sum(), (e * q).sum(),
                      g.sum(), p.sum(), jnp.sum(g * g), jnp.sum(p * p), jnp.sum(g * p)])


def from_sums(sums, count: int) -> dict[str, float]:
    """The final metrics from `chunk_sums` added over `count` evaluation points.

    - test_loss: plain MSE, unbiased for E[(h_θ - h)²] since the points are fresh; test_loss_se its
      standard error, from the per-point squared errors (sample variance / count).
    - mean_h2: the points' mean h², a diagnostic (E[h²] = 1 exactly: far from 1 means the tail was
      over- or under-sampled, and the MSE with it).
    - test_loss_cv, test_loss_cv_se: the control-variate estimate MSE − β̂ (mean h² − 1), β̂ = cov(e, h²)/var(h²),
      and its standard error: the same expectation, with the part of the noise that h²'s tail explains removed.
    - feature_corr: Pearson(g, p) over the points.
    The loss over all points at once equals `mse`; the correlation equals `pearson`.
    """
    e, e2, q, q2, eq, g, p, g2, p2, gp = (float(v) / count for v in np.asarray(sums, np.float64))
    bessel = count / max(count - 1, 1)
    var_e, var_q, cov_eq = (e2 - e * e) * bessel, (q2 - q * q) * bessel, (eq - e * q) * bessel
    beta = cov_eq / var_q if var_q > 0 else 0.0
    var_g, var_p, cov = g2 - g * g, p2 - p * p, gp - g * p
    corr = cov / np.sqrt(var_g * var_p) if var_g > 0 and var_p > 0 else 0.0
    return {
        "test_loss": e,
        "test_loss_se": float(np.sqrt(max(var_e, 0.0) / count)),
        "mean_h2": q,
        "test_loss_cv": e - beta * (q - 1.0),
        "test_loss_cv_se": float(np.sqrt(max(var_e - beta * cov_eq, 0.0) / count)),
        "feature_corr": float(np.clip(corr, -1.0, 1.0)),
    }
